"""Extra fusion-fixture/1 cases beyond ../shared/fixtures/pytorch: whole torchvision networks
(eval and QAT), single patterns with unusual options, user modules with cat/mul/flatten/view,
and error cases. Every expectation comes from PyTorch's own fuse_modules / fuse_modules_qat
through the shared fixturelib.make_case (one hand-adapted variant, make_case_noref, exists for
models whose unfused forward itself fails).

Run (Debian python3-torch 1.13 + python3-torchvision 0.14):
    /usr/bin/python3 tools/pytorch-fixtures-extra/make_extra_fixtures.py [OUTDIR] [--full-nets] [--only SUBSTR]
OUTDIR defaults to ../extra-fixtures beside the repository (next to ../shared, where the shared fixtures live).
The shared library is imported from $FIXTURELIB_DIR (default ../shared/tools/pytorch-fixtures beside the repository).
Default run: ~150 MB. --full-nets adds the full-width networks that do not fit that budget
(~550 MB more): net_resnet50, net_mobilenet_v3_large and the QAT cases of all four networks."""
import sys, os, json, copy, argparse, functools, traceback
# Paths default relative to the repository (two folders up from this script), not to the caller's folder or one machine.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.environ.get("FIXTURELIB_DIR", os.path.join(REPO, "..", "shared", "tools", "pytorch-fixtures"))
sys.path.insert(0, LIB)
import warnings
warnings.filterwarnings("ignore")
import torch, torch.nn as nn
import torchvision.models.quantization as qm
from torch.ao.quantization import fuse_modules, fuse_modules_qat, QuantStub, DeQuantStub
import fixturelib
from fixturelib import make_case, randomize_bn, describe, graph_of, save_safetensors
import netcases
from netcases import net_case, fuse_list_of

ap = argparse.ArgumentParser()
ap.add_argument("outdir", nargs="?", default=os.path.join(REPO, "..", "extra-fixtures"),
                help="output folder (default: ../extra-fixtures beside the repository)")
ap.add_argument("--full-nets", action="store_true", help="also the full-width networks over the size budget")
ap.add_argument("--only", default=None, help="only cases whose name contains this")
args = ap.parse_args()
out = args.outdir
os.makedirs(out, exist_ok=True)

g = torch.Generator().manual_seed(4321)
torch.manual_seed(4321)
results, skipped = [], []

def want(name):
    return args.only is None or args.only in name

def seq(*mods, train=False):
    m = nn.Sequential(*mods)
    randomize_bn(m, g)
    return m.train() if train else m.eval()

def inp(*shape):
    return torch.randn(*shape, generator=g)

TRANSPOSE_GROUPED_NOTE = ("PyTorch 1.13 folds grouped ConvTranspose+BN with a wrong broadcast and fails; "
                          "a correct implementation fuses it and matches output.unfused")

def make_case_noref(outdir, name, model, fuse, x, *, qat=False, description="", tol=(1e-4, 1e-5), note=None):
    """make_case, hand-adapted for models whose unfused forward raises (e.g. BatchNorm built with a
    different channel count than the conv before it): the forward errors are caught; the fusion
    outcome is still PyTorch's. expect.reference_output is null and expect.reference_error says why."""
    graph = graph_of(model)
    case = {"format": "fusion-fixture/1", "name": name, "description": description,
            "torch_version": torch.__version__, "qat": qat, "fuse": fuse,
            "model": describe(model), "forward": graph, "input": "input"}
    tensors = {"input": x}
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for k, v in before.items():
        tensors["model." + k] = v
    expect = {"reference_output": None, "rtol": tol[0], "atol": tol[1]}
    try:
        with torch.no_grad():
            ref = copy.deepcopy(model)(x.clone())
        tensors["output.unfused"] = ref
        expect["reference_output"] = "output.unfused"
    except Exception as e:
        ref = None
        expect["reference_error"] = {"error_type": type(e).__name__, "error_message": str(e)}
    fn = fuse_modules_qat if qat else fuse_modules
    try:
        fused = fn(model, fuse, inplace=False)
        for k, v in fused.state_dict().items():
            tensors["fused." + k] = v.detach().clone()
        expect.update({"outcome": "fused", "fused_model": describe(fused)})
        try:
            with torch.no_grad():
                o = copy.deepcopy(fused)(x.clone())
            tensors["output.fused"] = o
            expect["output"] = "output.fused"
            if ref is not None:
                expect["max_abs_diff_torch"] = float((o - ref).abs().max())
        except Exception as e:
            expect["output"] = None
            expect["fused_forward_error"] = {"error_type": type(e).__name__, "error_message": str(e)}
    except Exception as e:
        expect.update({"outcome": "error", "error_type": type(e).__name__, "error_message": str(e)})
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    if note:
        expect["note"] = note
    case["expect"] = expect
    with open(f"{outdir}/{name}.json", "w") as f:
        json.dump(case, f, indent=1)
    save_safetensors(f"{outdir}/{name}.safetensors", tensors, {"case": name})
    return case

def run(name, builder):
    """builder() -> case dict. Records the outcome, or the reason the case could not be made."""
    if not want(name):
        return
    try:
        c = builder()
        e = c["expect"]
        results.append((name, e["outcome"], e.get("error_type", ""), e.get("error_message", "")[:90],
                        e.get("max_abs_diff_torch"), "note" if "note" in e else ""))
        print(f"{name:55s} {e['outcome']:6s} {e.get('error_type', '')} {e.get('max_abs_diff_torch', '')}", flush=True)
    except Exception as ex:
        skipped.append((name, f"{type(ex).__name__}: {ex}"))
        print(f"{name:55s} SKIPPED {type(ex).__name__}: {ex}", flush=True)
        for ext in (".json", ".safetensors"):
            if os.path.exists(os.path.join(out, name + ext)):
                os.remove(os.path.join(out, name + ext))

def single(name, model, fuse, x, qat=False, description="", note=None, tol=(1e-4, 1e-5), noref=False):
    desc = description or f"Sequential {name}"
    if noref:
        run(name, lambda: make_case_noref(out, name, model, fuse, x, qat=qat, description=desc, note=note, tol=tol))
    else:
        run(name, lambda: make_case(out, name, model, fuse, x, qat=qat, description=desc, note=note, tol=tol))

# ---------------------------------------------------------------- single patterns, unusual options
single("conv2d_s2_d2_g2_nobias_bn_eps1e-3",
       seq(nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, bias=False), nn.BatchNorm2d(6, eps=1e-3)),
       ["0", "1"], inp(2, 4, 11, 10))
single("conv2d_s2_d2_g2_nobias_bn_eps1e-3_relu",
       seq(nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, bias=False), nn.BatchNorm2d(6, eps=1e-3), nn.ReLU()),
       ["0", "1", "2"], inp(2, 4, 11, 10))
single("conv3d_same_padding_bn",
       seq(nn.Conv3d(3, 5, 3, padding="same"), nn.BatchNorm3d(5)), ["0", "1"], inp(1, 3, 5, 6, 4))
single("conv3d_same_padding_even_kernel_dilated_bn_relu",
       seq(nn.Conv3d(3, 5, (2, 3, 4), padding="same", dilation=(1, 2, 1)), nn.BatchNorm3d(5), nn.ReLU()),
       ["0", "1", "2"], inp(1, 3, 5, 7, 6),
       description="Conv3d padding='same' with even kernel sizes (PyTorch pads asymmetrically) and dilation")
single("conv3d_valid_padding_relu",
       seq(nn.Conv3d(3, 4, 2, padding="valid"), nn.ReLU()), ["0", "1"], inp(1, 3, 4, 5, 4))
single("conv1d_reflect_bn",
       seq(nn.Conv1d(3, 5, 3, padding=1, padding_mode="reflect"), nn.BatchNorm1d(5)), ["0", "1"], inp(2, 3, 10))
single("conv1d_reflect_s2_bn_relu",
       seq(nn.Conv1d(3, 5, 4, stride=2, padding=3, padding_mode="reflect"), nn.BatchNorm1d(5), nn.ReLU()),
       ["0", "1", "2"], inp(2, 3, 11))
single("conv1d_reflect_relu",
       seq(nn.Conv1d(3, 5, 3, padding=2, dilation=2, padding_mode="reflect"), nn.ReLU()), ["0", "1"], inp(2, 3, 9))
single("conv3d_circular_bn",
       seq(nn.Conv3d(2, 3, 3, padding=1, padding_mode="circular"), nn.BatchNorm3d(3)), ["0", "1"], inp(1, 2, 4, 5, 3))
single("convtranspose1d_grouped_bn",
       seq(nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2), nn.BatchNorm1d(6)), ["0", "1"], inp(2, 4, 7),
       note=TRANSPOSE_GROUPED_NOTE)
single("convtranspose3d_grouped_bn",
       seq(nn.ConvTranspose3d(4, 6, 3, stride=2, padding=1, groups=2), nn.BatchNorm3d(6)), ["0", "1"], inp(1, 4, 3, 4, 3),
       note=TRANSPOSE_GROUPED_NOTE)
single("convtranspose2d_depthwise_bn",
       seq(nn.ConvTranspose2d(4, 4, 3, stride=2, groups=4, bias=False), nn.BatchNorm2d(4)), ["0", "1"], inp(2, 4, 5, 5),
       note=TRANSPOSE_GROUPED_NOTE)
single("convtranspose2d_outpad_dilated_bn",
       seq(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, dilation=2), nn.BatchNorm2d(6)),
       ["0", "1"], inp(2, 4, 5, 6))
single("convtranspose2d_outpad_dilated_anisotropic_nobias_bn",
       seq(nn.ConvTranspose2d(3, 5, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(2, 3), bias=False),
           nn.BatchNorm2d(5, eps=1e-3)),
       ["0", "1"], inp(2, 3, 4, 5))
single("convtranspose3d_outpad_dilated_bn",
       seq(nn.ConvTranspose3d(2, 3, 2, stride=2, output_padding=1, dilation=2), nn.BatchNorm3d(3)), ["0", "1"], inp(1, 2, 3, 3, 2))
single("conv2d_bn_momentum_none",
       seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None)), ["0", "1"], inp(2, 3, 6, 6))
single("linear_bn1d_momentum_none",
       seq(nn.Linear(6, 5), nn.BatchNorm1d(5, momentum=None)), ["0", "1"], inp(4, 6))
single("error_conv2d_bn_no_running_stats_eval",
       seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)), ["0", "1"], inp(2, 3, 6, 6),
       description="BatchNorm2d(track_running_stats=False) in eval uses batch statistics, so nothing can be folded")
single("bn2d_no_running_stats_relu_eval",
       seq(nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU()), ["0", "1"], inp(2, 4, 5, 5),
       description="BN+ReLU with track_running_stats=False: grouping only, no folding")
single("conv2d_bn_relu_inplace",
       seq(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True)), ["0", "1", "2"], inp(2, 3, 6, 6))
single("conv1d_relu_inplace",
       seq(nn.Conv1d(3, 4, 3), nn.ReLU(inplace=True)), ["0", "1"], inp(2, 3, 8))
single("linear_relu_inplace",
       seq(nn.Linear(5, 4), nn.ReLU(inplace=True)), ["0", "1"], inp(3, 5))
single("error_bn1d_relu",
       seq(nn.BatchNorm1d(4), nn.ReLU()), ["0", "1"], inp(3, 4),
       description="BatchNorm1d+ReLU: PyTorch 1.13 has a rule for BN2d/BN3d+ReLU only")

# QAT (training mode) single patterns
single("qat_bn2d_relu", seq(nn.BatchNorm2d(4), nn.ReLU(), train=True), ["0", "1"], inp(4, 4, 5, 5), qat=True)
single("qat_bn3d_relu_inplace", seq(nn.BatchNorm3d(3), nn.ReLU(inplace=True), train=True), ["0", "1"], inp(2, 3, 3, 4, 3), qat=True)
single("qat_linear_relu", seq(nn.Linear(6, 5), nn.ReLU(), train=True), ["0", "1"], inp(4, 6), qat=True)
single("qat_linear_relu_inplace_nobias", seq(nn.Linear(6, 5, bias=False), nn.ReLU(inplace=True), train=True), ["0", "1"], inp(4, 6), qat=True)
single("qat_conv2d_bn_relu_inplace",
       seq(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), train=True), ["0", "1", "2"], inp(4, 3, 6, 6), qat=True)
single("qat_conv3d_bn_relu",
       seq(nn.Conv3d(2, 3, 2), nn.BatchNorm3d(3), nn.ReLU(), train=True), ["0", "1", "2"], inp(2, 2, 4, 4, 3), qat=True)
single("qat_conv1d_bn", seq(nn.Conv1d(3, 4, 3, bias=False), nn.BatchNorm1d(4), train=True), ["0", "1"], inp(4, 3, 8), qat=True)
single("qat_conv2d_bn_momentum_none",
       seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None), train=True), ["0", "1"], inp(4, 3, 6, 6), qat=True)
single("error_qat_conv2d_bn_no_running_stats",
       seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), train=True), ["0", "1"], inp(4, 3, 6, 6), qat=True)
single("qat_conv2d_s2_d2_g2_nobias_bn_eps1e-3_relu",
       seq(nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, bias=False), nn.BatchNorm2d(6, eps=1e-3), nn.ReLU(), train=True),
       ["0", "1", "2"], inp(4, 4, 11, 10), qat=True)
single("qat_linear_bn1d_eps_momentum",
       seq(nn.Linear(7, 3), nn.BatchNorm1d(3, eps=1e-3, momentum=0.3), train=True), ["0", "1"], inp(6, 7), qat=True)

# A Sequential with pooling and dropout between the fused groups
single("pools_dropout_between_groups",
       seq(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
           nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
           nn.Dropout(0.3),
           nn.Conv2d(6, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
           nn.AvgPool2d(2, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
           nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 3 * 3, 5), nn.ReLU()),
       [["0", "1", "2"], ["5", "6", "7"], ["11", "12"]], inp(2, 3, 11, 11),
       description="eval: Conv+BN+ReLU, MaxPool2d(ceil_mode), Dropout, Conv+BN+ReLU, AvgPool2d(count_include_pad=False, ceil_mode=True), Flatten, Dropout, Linear+ReLU")

class PoolsUser(nn.Module):
    """The same idea as a user module, with the groups named and a dotted path into a child."""
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.drop = nn.Dropout(0.2)
        self.conv = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.pool2 = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.fc = nn.Linear(6 * 3 * 3, 4)
        self.fc_bn = nn.BatchNorm1d(4)
    def forward(self, x):
        x = self.drop(self.pool1(self.stem(x)))
        x = self.pool2(self.relu(self.bn(self.conv(x))))
        return self.fc_bn(self.fc(torch.flatten(x, 1)))

def mk(cls, train=False, dropout_eval=True):
    m = cls(); randomize_bn(m, g)
    m = m.train() if train else m.eval()
    if dropout_eval:
        for mm in m.modules():
            if isinstance(mm, nn.Dropout): mm.eval()
    return m

single("user_pools_dropout_between_groups", mk(PoolsUser),
       [["stem.0", "stem.1", "stem.2"], ["conv", "bn", "relu"], ["fc", "fc_bn"]], inp(2, 3, 10, 10),
       description="user module: MaxPool2d(ceil_mode), Dropout, AvgPool2d(count_include_pad=False, ceil_mode=True) between fused groups")

class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))

class CatMulFlattenView(nn.Module):
    """Two branches concatenated, gated by a product, flattened and viewed."""
    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1); self.bn_a = nn.BatchNorm2d(4); self.relu_a = nn.ReLU()
        self.conv_b = nn.Conv2d(3, 4, 3, padding=1, bias=False); self.relu_b = nn.ReLU(inplace=True)
        self.sub = Gate()
        self.gate = nn.Conv2d(3, 8, 1); self.gate_bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, 6); self.fc_bn = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 3); self.head_relu = nn.ReLU()
    def forward(self, x):
        a = self.relu_a(self.bn_a(self.conv_a(x)))
        b = self.relu_b(self.conv_b(x))
        c = torch.cat([a, b], dim=1)
        c = self.sub(c)
        m = torch.mul(c, self.gate_bn(self.gate(x))) * 0.5
        f = torch.flatten(self.pool(m), 1)
        v = f.view(-1, 32)
        y = self.fc_bn(self.fc(v))
        return self.head_relu(self.head(y)).view(-1, 3, 1)

CMFV_FUSE = [["conv_a", "bn_a", "relu_a"], ["conv_b", "relu_b"], ["sub.conv", "sub.bn", "sub.relu"],
             ["gate", "gate_bn"], ["fc", "fc_bn"], ["head", "head_relu"]]
single("user_cat_mul_flatten_view", mk(CatMulFlattenView), CMFV_FUSE, inp(2, 3, 6, 6),
       description="user module: torch.cat, torch.mul, scalar *, torch.flatten, Tensor.view; groups at root and in a child")
single("qat_user_cat_mul_flatten_view", mk(CatMulFlattenView, train=True), CMFV_FUSE, inp(4, 3, 6, 6), qat=True,
       description="training-mode fuse_modules_qat on the cat/mul/flatten/view user module")
single("user_cat_mul_flatten_view_partial", mk(CatMulFlattenView), [["sub.conv", "sub.bn"], ["conv_b", "relu_b"]], inp(2, 3, 6, 6),
       description="a subset of groups, Conv+BN without its ReLU inside the child")

# ---------------------------------------------------------------- error cases and odd fuse lists
single("error_qat_conv2d_bn_no_affine",
       seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False), train=True), ["0", "1"], inp(4, 3, 6, 6), qat=True)
single("error_qat_conv2d_bn_relu_no_affine",
       seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False), nn.ReLU(), train=True), ["0", "1", "2"], inp(4, 3, 6, 6), qat=True)
single("error_qat_num_features_mismatch",
       seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5), train=True), ["0", "1"], inp(4, 3, 6, 6), qat=True, noref=True,
       description="BatchNorm2d(5) after a 4-channel conv: the unfused forward itself fails (expect.reference_error)")
single("error_num_features_mismatch_eval",
       seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5)), ["0", "1"], inp(2, 3, 6, 6), noref=True,
       description="eval: BatchNorm2d(5) after a 4-channel conv: the unfused forward itself fails (expect.reference_error)")
single("error_linear_bn1d_num_features_mismatch_eval",
       seq(nn.Linear(6, 4), nn.BatchNorm1d(5)), ["0", "1"], inp(3, 6), noref=True,
       description="eval: BatchNorm1d(5) after Linear(6, 4): the unfused forward itself fails (expect.reference_error)")
single("error_missing_nested_name", mk(CatMulFlattenView), [["conv_a", "bn_a", "relu_a"], ["sub.conv", "sub.missing"]], inp(2, 3, 6, 6),
       description="a valid group first, then a dotted path that does not exist: the model must be left untouched")
single("error_missing_nested_parent", mk(CatMulFlattenView), [["nosuch.conv", "nosuch.bn"]], inp(2, 3, 6, 6))
single("error_relu_conv2d", seq(nn.ReLU(), nn.Conv2d(3, 4, 3)), ["0", "1"], inp(2, 3, 6, 6))
single("error_reversed_bn_conv2d", seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), ["1", "0"], inp(2, 3, 6, 6),
       description="a valid pair listed in the wrong order: (BatchNorm2d, Conv2d) has no rule")
single("error_conv2d_bn_relu6", seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU6()), ["0", "1", "2"], inp(2, 3, 6, 6))
single("error_conv2d_single_module", seq(nn.Conv2d(3, 4, 3), nn.ReLU()), [["0"]], inp(2, 3, 6, 6),
       description="a group of one module")
single("error_qat_mixed_modes", (lambda m: (m[1].eval(), m)[1])(seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), train=True)),
       ["0", "1"], inp(4, 3, 6, 6), qat=True)
FOUR = lambda: seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.ReLU())
single("fuse_list_then_string_digits", FOUR(), [["0", "1"], "23"], inp(2, 3, 6, 6),
       description="a list of lists whose second entry is the string '23': PyTorch iterates it as the names '2', '3'")
single("error_fuse_string_then_list", FOUR(), ["0", ["2", "3"]], inp(2, 3, 6, 6),
       description="a string then a list: not all strings, so PyTorch treats it as a list of groups and iterates '0' as the group ['0']")
single("fuse_string_digits_then_list", FOUR(), ["01", ["2", "3"]], inp(2, 3, 6, 6),
       description="a string then a list: PyTorch treats it as a list of groups and iterates '01' as the names '0', '1'")
single("error_fuse_list_then_named_string", mk(CatMulFlattenView), [["conv_a", "bn_a", "relu_a"], "fc"], inp(2, 3, 6, 6),
       description="a list of lists whose second entry is the string 'fc': PyTorch iterates its characters 'f', 'c'")
single("error_empty_group", seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), [[]], inp(2, 3, 6, 6))
single("error_empty_fuse_list", seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), [], inp(2, 3, 6, 6),
       description="modules_to_fuse = []: PyTorch treats it as one empty group")
single("error_empty_group_after_valid", seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), [["0", "1"], []], inp(2, 3, 6, 6),
       description="a valid group, then an empty one: the model must be left untouched")

# ---------------------------------------------------------------- whole torchvision networks
def qat_net_case(outdir, name, ctor, x, seed, tol=(1e-3, 1e-4)):
    """net_case for fuse_modules_qat: the groups that fuse_model(is_qat=True) fuses, the model in
    training mode (Dropout put in eval so that both forwards are deterministic)."""
    torch.manual_seed(seed)
    gg = torch.Generator().manual_seed(seed)
    probe = ctor().train()
    probe.fuse_model = functools.partial(type(probe).fuse_model, probe, True)   # fuse_model(is_qat=True)
    groups = fuse_list_of(probe)
    torch.manual_seed(seed)
    model = ctor().train()
    randomize_bn(model, gg)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    return make_case(outdir, name, model, groups, x, qat=True, tol=tol,
                     description=f"torchvision quantizable {name}, training mode, fuse_modules_qat with the groups of its own "
                                 f"fuse_model(is_qat=True); Dropout modules in eval")

gx = torch.Generator().manual_seed(99)
x1 = torch.randn(1, 3, 64, 64, generator=gx)
x2 = torch.randn(2, 3, 64, 64, generator=gx)
NETS = [  # name, ctor, qat?, full-size tier?
    ("net_resnet18", lambda: qm.resnet18(weights=None, quantize=False, num_classes=10), False, False),
    ("net_mobilenet_v2", lambda: qm.mobilenet_v2(weights=None, quantize=False, num_classes=10), False, False),
    ("net_resnet50_wpg4", lambda: qm.resnet50(weights=None, quantize=False, num_classes=10, width_per_group=4), False, False),
    ("net_mobilenet_v3_large_w05", lambda: qm.mobilenet_v3_large(weights=None, quantize=False, num_classes=10, width_mult=0.5), False, False),
    ("qat_net_mobilenet_v2_w035", lambda: qm.mobilenet_v2(weights=None, quantize=False, num_classes=10, width_mult=0.35), True, False),
    ("qat_net_mobilenet_v3_large_w035", lambda: qm.mobilenet_v3_large(weights=None, quantize=False, num_classes=10, width_mult=0.35), True, False),
    ("net_resnet50", lambda: qm.resnet50(weights=None, quantize=False, num_classes=10), False, True),
    ("net_mobilenet_v3_large", lambda: qm.mobilenet_v3_large(weights=None, quantize=False, num_classes=10), False, True),
    ("qat_net_resnet18", lambda: qm.resnet18(weights=None, quantize=False, num_classes=10), True, True),
    ("qat_net_resnet50", lambda: qm.resnet50(weights=None, quantize=False, num_classes=10), True, True),
    ("qat_net_mobilenet_v2", lambda: qm.mobilenet_v2(weights=None, quantize=False, num_classes=10), True, True),
    ("qat_net_mobilenet_v3_large", lambda: qm.mobilenet_v3_large(weights=None, quantize=False, num_classes=10), True, True),
]
for i, (name, ctor, qat, full) in enumerate(NETS):
    if full and not args.full_nets:
        continue
    seed = 100 + i
    if qat:
        run(name, lambda: qat_net_case(out, name, ctor, x2.clone(), seed))
    else:
        run(name, lambda: net_case(out, name, ctor, x1.clone(), seed))

# ---------------------------------------------------------------- summary
with open(os.path.join(out, "MANIFEST.tsv" if args.only is None else os.devnull), "w") as f:
    f.write("case\toutcome\terror_type\tmax_abs_diff_torch\tnote\n")
    for name, outcome, et, em, d, note in sorted(results):
        f.write(f"{name}\t{outcome}\t{et}\t{'' if d is None else d}\t{note}\n")
print(f"\n{len(results)} cases written to {out}; {len(skipped)} skipped")
for name, why in skipped:
    print("SKIPPED", name, why)
