using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>
/// PyTorch's <c>BatchNorm1d/2d/3d</c>. In eval mode (with running statistics) it normalises with
/// <c>running_mean</c>/<c>running_var</c>; in training mode, or without tracked statistics, with the batch's own.
/// Non-affine BatchNorm has no weight or bias (they act as 1 and 0).
/// </summary>
public sealed class BatchNorm : Module
{
    private BatchNorm(ModuleParts parts, int rank, int numFeatures, double eps, double? momentum, bool affine, bool trackRunningStats) : base(parts)
    {
        Rank = rank; NumFeatures = numFeatures; Eps = eps; Momentum = momentum; Affine = affine; TrackRunningStats = trackRunningStats;
        Validate();
    }

    /// <summary>1, 2 or 3: which of <c>BatchNorm1d/2d/3d</c>.</summary>
    public int Rank { get; }
    /// <summary><c>num_features</c>: the channel count.</summary>
    public int NumFeatures { get; }
    /// <summary><c>eps</c>.</summary>
    public double Eps { get; }
    /// <summary><c>momentum</c>; null means a cumulative moving average.</summary>
    public double? Momentum { get; }
    /// <summary><c>affine</c>: whether weight and bias exist.</summary>
    public bool Affine { get; }
    /// <summary><c>track_running_stats</c>: whether running statistics exist.</summary>
    public bool TrackRunningStats { get; }

    /// <summary>gamma, or null when not affine.</summary>
    public Tensor? Weight => State.TryGet("weight");
    /// <summary>beta, or null when not affine.</summary>
    public Tensor? Bias => State.TryGet("bias");
    /// <summary>Running mean, or null when statistics are not tracked.</summary>
    public Tensor? RunningMean => State.TryGet("running_mean");
    /// <summary>Running variance, or null when statistics are not tracked.</summary>
    public Tensor? RunningVar => State.TryGet("running_var");
    /// <summary>Batches seen (int64 scalar), or null when statistics are not tracked.</summary>
    public Tensor? NumBatchesTracked => State.TryGet("num_batches_tracked");

    /// <inheritdoc />
    public override string TypeName => $"BatchNorm{Rank}d";

    /// <summary>The three kinds <c>BatchNorm1d/2d/3d</c>.</summary>
    internal static IEnumerable<LayerDescriptor> Descriptors =>
        from rank in new[] { 1, 2, 3 }
        select new LayerDescriptor($"BatchNorm{rank}d", typeof(BatchNorm),
            [
                Need("num_features", K.Int), Opt("eps", K.Double, 1e-5), Opt("momentum", K.OptionalDouble, 0.1), Opt("affine", K.Bool, true),
                Opt("track_running_stats", K.Bool, true),
            ],
            ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"],
            a => Create(rank, a.Int("num_features"), a.Double("eps"), a.OptionalDouble("momentum"), a.Bool("affine"), a.Bool("track_running_stats"),
                a.State.TryGet("weight"), a.State.TryGet("bias"), a.State.TryGet("running_mean"), a.State.TryGet("running_var"),
                a.State.TryGet("num_batches_tracked"), a.Training),
            LayerDescriptor.SameShape,
            new Dictionary<string, object?> { ["num_features"] = 3 },
            rank == 1 ? [2, 3] : [2, 3, .. Enumerable.Repeat(4 - rank, rank)],
            neededState: a => (a.Bool("affine") ? new[] { "weight", "bias" } : []).Concat(
                a.Bool("track_running_stats") ? ["running_mean", "running_var", "num_batches_tracked"] : []),
            note: "weight 1, bias 0, running mean 0, running variance 1; a null momentum is PyTorch's momentum=None (a cumulative average)");

    private static readonly string[] Buffers = ["running_mean", "running_var", "num_batches_tracked"];

    /// <inheritdoc />
    public override IReadOnlyCollection<string> BufferNames => Buffers;

    /// <summary>
    /// Creates a BatchNorm with PyTorch's defaults: weight 1, bias 0, running mean 0, variance 1, 0 batches, unless given.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor has the wrong shape, or one is given that the flags exclude.</exception>
    public static BatchNorm Create(int rank, int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true,
        bool trackRunningStats = true, Tensor? weight = null, Tensor? bias = null, Tensor? runningMean = null,
        Tensor? runningVar = null, Tensor? numBatchesTracked = null, bool training = false)
    {
        if (rank is < 1 or > 3) throw new ArgumentException($"BatchNorm rank must be 1, 2 or 3, got {rank}");
        Limits.RequireArgument($"BatchNorm{rank}d", "num_features", numFeatures, 1);
        if (affine) { weight ??= Tensor.Full(1f, numFeatures); bias ??= Tensor.Zeros(numFeatures); }
        if (trackRunningStats)
        {
            runningMean ??= Tensor.Zeros(numFeatures);
            runningVar ??= Tensor.Full(1f, numFeatures);
            numBatchesTracked ??= Tensor.ScalarInt64(0);
        }
        var state = TensorDict.Create(("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVar),
            ("num_batches_tracked", numBatchesTracked));
        return new BatchNorm(ModuleParts.Leaf(training, state), rank, numFeatures, eps, momentum, affine, trackRunningStats);
    }

    private protected override Module Rebuild(ModuleParts parts) => new BatchNorm(parts, Rank, NumFeatures, Eps, Momentum, Affine, TrackRunningStats);

    private protected override bool HyperparametersEqual(Module other)
        => other is BatchNorm b && b.Rank == Rank && b.NumFeatures == NumFeatures && b.Eps.Equals(Eps) && Nullable.Equals(b.Momentum, Momentum)
           && b.Affine == Affine && b.TrackRunningStats == TrackRunningStats;

    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments =>
    [
        new("num_features", NumFeatures), new("eps", Eps), new("momentum", Momentum), new("affine", Affine),
        new("track_running_stats", TrackRunningStats),
    ];

    /// <inheritdoc />
    public override string ExtraRepr =>
        $"{NumFeatures}, eps={ModuleRepr.Float(Eps)}, momentum={(Momentum is { } m ? ModuleRepr.Float(m) : "None")}, " +
        $"affine={ModuleRepr.Bool(Affine)}, track_running_stats={ModuleRepr.Bool(TrackRunningStats)}";

    private void Validate()
    {
        var t = TypeName;
        RequireNoChildren(Parts, t);
        RequireStateNames(Parts, t, "weight", "bias", "running_mean", "running_var", "num_batches_tracked");
        if (!(Eps > 0)) throw new ArgumentException($"{t}: eps must be positive, got {Eps}");
        if (Affine)
        {
            RequireShape(Weight, t, "weight", NumFeatures);
            RequireShape(Bias, t, "bias", NumFeatures);
        }
        else if (Weight is not null || Bias is not null) throw new ArgumentException($"{t}: affine=False but weight or bias was given");
        if (TrackRunningStats)
        {
            RequireShape(RunningMean, t, "running_mean", NumFeatures);
            RequireShape(RunningVar, t, "running_var", NumFeatures);
            var n = NumBatchesTracked;
            if (n is null || n.DType != DType.Int64 || n.Count != 1)
                throw new ArgumentException($"{t}: num_batches_tracked must be an int64 scalar");
        }
        else if (RunningMean is not null || RunningVar is not null || NumBatchesTracked is not null)
            throw new ArgumentException($"{t}: track_running_stats=False but running statistics were given");
    }
}
