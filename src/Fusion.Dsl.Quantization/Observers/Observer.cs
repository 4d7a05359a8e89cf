using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// An observer as an immutable value: <see cref="Observe"/> returns the state after one more calibration batch and
/// leaves this one as it was; <see cref="CalculateQParams"/> derives scales and zero points from the state. The
/// counterpart of PyTorch's <c>ObserverBase</c> (its <c>forward</c> and <c>calculate_qparams</c>) without the in-place
/// buffer updates.
/// </summary>
public abstract class Observer
{
    /// <summary>Constructor for the observers of this assembly.</summary>
    private protected Observer() { }

    /// <summary>The state after also observing <paramref name="batch"/> (PyTorch's <c>forward</c>).</summary>
    /// <param name="batch">A float32 calibration batch: non-empty, every element finite.</param>
    /// <returns>A new observer; this one is unchanged.</returns>
    /// <exception cref="ArgumentException">The batch is empty, not float32, holds NaN or an infinity, or does not fit the observer.</exception>
    public abstract Observer Observe(Tensor batch);

    /// <summary>The state after observing every batch in order.</summary>
    /// <param name="batches">The calibration batches.</param>
    /// <returns>A new observer; this one is unchanged.</returns>
    public Observer ObserveAll(IEnumerable<Tensor> batches)
    {
        ArgumentNullException.ThrowIfNull(batches);
        var o = this;
        foreach (var b in batches) o = o.Observe(b);
        return o;
    }

    /// <summary>The scales and zero points for what was observed (PyTorch's <c>calculate_qparams()</c>).</summary>
    /// <returns>One scale and zero point per channel, or one of each for a per-tensor observer.</returns>
    public abstract QParams CalculateQParams();
}
