using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Engine;

/// <summary>The activation an epilogue applies (<see cref="None"/> or one of <see cref="ActivationKind"/>).</summary>
internal enum Act
{
    None,
    ReLU,
    ReLU6,
    Hardswish,
    Hardsigmoid,
    SiLU,
    /// <summary>The logistic function: never a fused group's activation, only a graph's or a carried module's.</summary>
    Sigmoid,
}

/// <summary>
/// What a kernel does to each accumulated value before storing it, per output channel <c>c</c>:
/// <c>act(acc · Scale[c] + Shift[c])</c>. A plain bias is <c>Shift</c>; an eval BatchNorm folds into both;
/// a fused ReLU/ReLU6/Hardswish becomes <see cref="Activation"/>. Null arrays mean 1 and 0.
/// With a <see cref="Residual"/> the store is <c>act((acc · Scale[c] + Shift[c]) + Residual[i])</c>, <c>i</c> being the
/// output's own index: the three float32 operations of the unfused graph (the convolution's store, the add, the
/// activation) in its order, so the bits agree with it.
/// </summary>
internal readonly struct Epilogue
{
    public Epilogue(float[]? scale, float[]? shift, Act act, float[]? residual = null)
    {
        Scale = scale;
        Shift = shift;
        Activation = act;
        Residual = residual;
    }

    public float[]? Scale { get; }
    public float[]? Shift { get; }
    public Act Activation { get; }

    /// <summary>
    /// A tensor of exactly the output's shape and layout added before the activation (element <c>i</c> to output
    /// element <c>i</c>), or null. Only the GEMM and Winograd convolution paths take one (<see cref="ConvKernels.TakesResidual"/>);
    /// each checks its length against the output's before it indexes.
    /// </summary>
    public float[]? Residual { get; }

    public static Epilogue None => default;
    public static Epilogue Bias(float[]? bias, Act act = Act.None) => new(null, bias, act);

    public static Act ActOf(ActivationKind kind) => kind switch
    {
        ActivationKind.ReLU => Act.ReLU,
        ActivationKind.ReLU6 => Act.ReLU6,
        ActivationKind.Hardswish => Act.Hardswish,
        ActivationKind.Hardsigmoid => Act.Hardsigmoid,
        ActivationKind.SiLU => Act.SiLU,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>
    /// Applies <c>act(x·scale + shift)</c> to <paramref name="count"/> contiguous values in place.
    /// Used by every kernel's write-out, so all paths round identically.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void ApplyRun(float* src, float* dst, int count, float scale, float shift, bool hasScale, Act act)
    {
        var i = 0;
        if (Vector512.IsHardwareAccelerated && count >= 16)
        {
            var ws = Vector512.Create(scale);
            var wb = Vector512.Create(shift);
            for (; i <= count - 16; i += 16) Vector512.Store(Apply(Vector512.Load(src + i), ws, wb, hasScale, act), dst + i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var vs = Vector256.Create(scale);
            var vb = Vector256.Create(shift);
            for (; i <= count - 8; i += 8) Vector256.Store(Apply(Vector256.Load(src + i), vs, vb, hasScale, act), dst + i);
            // The tail as one masked vector: depthwise rows of 7 or 14 values are mostly tail, and the scalar loop
            // cost more than the convolution itself on mobilenet's small maps. Masked-off lanes are neither read nor written.
            if (i < count && System.Runtime.Intrinsics.X86.Avx.IsSupported)
            {
                var mask = TailMask(count - i);
                var v = System.Runtime.Intrinsics.X86.Avx.MaskLoad(src + i, mask);
                System.Runtime.Intrinsics.X86.Avx.MaskStore(dst + i, mask, Apply(v, vs, vb, hasScale, act));
                return;
            }
        }
        for (; i < count; i++) dst[i] = Apply(src[i], scale, shift, hasScale, act);
    }

    /// <summary>A lane mask with the first <paramref name="n"/> (1..7) lanes set, for AVX's masked loads and stores.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> TailMask(int n)
        => Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(n)).AsSingle();

    /// <summary>One value through <c>act(x·scale + shift)</c>, rounded exactly as the vector path rounds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Apply(float x, float scale, float shift, bool hasScale, Act act)
        => Activate(hasScale ? MathF.FusedMultiplyAdd(x, scale, shift) : x + shift, act);

    /// <summary>
    /// One value through <c>act((x·scale + shift) + r)</c>: the epilogue's value rounded to float32, then the residual added
    /// in float32, then the activation, as the unfused graph computes them (never one FMA with the residual folded in).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Apply(float x, float scale, float shift, bool hasScale, float r, Act act)
        => Activate((hasScale ? MathF.FusedMultiplyAdd(x, scale, shift) : x + shift) + r, act);

    /// <summary>
    /// A vector through <c>act(x·scale + shift)</c>, or with a non-null <paramref name="residual"/> through
    /// <c>act((x·scale + shift) + residual[0..8))</c> (the order of <see cref="Apply(float, float, float, bool, float, Act)"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> Apply(Vector256<float> x, Vector256<float> scale, Vector256<float> shift, bool hasScale, float* residual, Act act)
    {
        var y = hasScale ? Vector256.FusedMultiplyAdd(x, scale, shift) : x + shift;
        return Activate(residual == null ? y : y + Vector256.Load(residual), act);
    }

    /// <summary>The 512-bit form of <see cref="Apply(Vector256{float}, Vector256{float}, Vector256{float}, bool, float*, Act)"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> Apply(Vector512<float> x, Vector512<float> scale, Vector512<float> shift, bool hasScale, float* residual, Act act)
    {
        var y = hasScale ? Vector512.FusedMultiplyAdd(x, scale, shift) : x + shift;
        return Activate(residual == null ? y : y + Vector512.Load(residual), act);
    }

    /// <summary>A vector through <c>act(x·scale + shift)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Apply(Vector256<float> x, Vector256<float> scale, Vector256<float> shift, bool hasScale, Act act)
        => Activate(hasScale ? Vector256.FusedMultiplyAdd(x, scale, shift) : x + shift, act);

    /// <summary>A 512-bit vector through <c>act(x·scale + shift)</c>, the same operations as the 256-bit path, lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Apply(Vector512<float> x, Vector512<float> scale, Vector512<float> shift, bool hasScale, Act act)
        => Activate(hasScale ? Vector512.FusedMultiplyAdd(x, scale, shift) : x + shift, act);

    /// <summary>Scale and shift of channel <paramref name="c"/> (1 and 0 where absent).</summary>
    public (float Scale, float Shift) At(int c) => (Scale is null ? 1f : Scale[c], Shift is null ? 0f : Shift[c]);

    /// <summary>The activation on a vector, with PyTorch's formulas (NaN propagates through ReLU/ReLU6 as in <c>clamp</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Activate(Vector256<float> v, Act act)
    {
        switch (act)
        {
            case Act.None: return v;
            case Act.ReLU: return Vector256.Max(v, Vector256<float>.Zero);
            case Act.ReLU6: return Vector256.Min(Vector256.Max(v, Vector256<float>.Zero), Vector256.Create(6f));
            case Act.Hardswish:
                return v * Vector256.Min(Vector256.Max(v + Vector256.Create(3f), Vector256<float>.Zero), Vector256.Create(6f)) / Vector256.Create(6f);
            case Act.Hardsigmoid:
                return Vector256.Min(Vector256.Max(v + Vector256.Create(3f), Vector256<float>.Zero), Vector256.Create(6f)) / Vector256.Create(6f);
            case Act.Sigmoid: return Vector256<float>.One / (Vector256<float>.One + FloatExp.Exp(-v));
            default: return v / (Vector256<float>.One + FloatExp.Exp(-v));
        }
    }

    /// <summary><see cref="Activate(Vector256{float}, Act)"/> on 512-bit vectors: the piecewise forms, SiLU and Sigmoid.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Activate(Vector512<float> v, Act act) => act switch
    {
        Act.SiLU => v / (Vector512<float>.One + FloatExp.Exp(-v)),
        Act.Sigmoid => Vector512<float>.One / (Vector512<float>.One + FloatExp.Exp(-v)),
        _ => ActivatePiecewise(v, act),
    };

    /// <summary>
    /// <see cref="Activate(Vector512{float}, Act)"/> for every activation but SiLU and Sigmoid, which the caller must route elsewhere
    /// (<see cref="CallsOut"/>): no branch of it calls a method, so a kernel that ends with it keeps its accumulators in
    /// registers (the JIT spills any vector that is live across a call on every definition).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ActivatePiecewise(Vector512<float> v, Act act)
    {
        var six = Vector512.Create(6f);
        return act switch
        {
            Act.ReLU => Vector512.Max(v, Vector512<float>.Zero),
            Act.ReLU6 => Vector512.Min(Vector512.Max(v, Vector512<float>.Zero), six),
            Act.Hardswish => v * Vector512.Min(Vector512.Max(v + Vector512.Create(3f), Vector512<float>.Zero), six) / six,
            Act.Hardsigmoid => Vector512.Min(Vector512.Max(v + Vector512.Create(3f), Vector512<float>.Zero), six) / six,
            _ => v,
        };
    }

    /// <summary>Whether <paramref name="act"/>'s vector form calls a method (the exponential of SiLU and Sigmoid).</summary>
    public static bool CallsOut(Act act) => act is Act.SiLU or Act.Sigmoid;

    /// <summary>
    /// Scalar counterpart of <see cref="Activate(Vector256{float}, Act)"/>, lane for lane the same value: the exponential of SiLU and
    /// Sigmoid is the vector one on a single lane (<see cref="FloatExp"/>; <c>MathF.Exp</c> differs from it in the last ulp), so an element gives the same
    /// bits whether a kernel reaches it in a vector, in a tail, or on a machine without wide vectors.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Activate(float v, Act act) => act switch
    {
        Act.None => v,
        Act.ReLU => MathF.Max(v, 0f),
        Act.ReLU6 => MathF.Min(MathF.Max(v, 0f), 6f),
        Act.Hardswish => v * MathF.Min(MathF.Max(v + 3f, 0f), 6f) / 6f,
        Act.Hardsigmoid => MathF.Min(MathF.Max(v + 3f, 0f), 6f) / 6f,
        Act.Sigmoid => 1f / (1f + Exp(-v)),
        _ => v / (1f + Exp(-v)),
    };

    /// <summary>The vector exponential on one lane.</summary>
    private static float Exp(float x) => FloatExp.Exp(x);
}
