namespace Fusion.Dsl.Tensors;

/// <summary>
/// The elements of a float32 tensor not computed yet: a tensor built on it (<see cref="Tensor.Deferred"/>) has its shape
/// at once and computes its elements once, on first read, from any thread, then drops this object. The folding code
/// uses it so that fusing writes no copy of the weights (see <c>Folding.PendingFold</c>).
/// </summary>
internal abstract class DeferredElements
{
    /// <summary>How many elements <see cref="Compute"/> returns.</summary>
    public abstract int Count { get; }

    /// <summary>Computes the elements: pure, a new array of <see cref="Count"/> elements each call.</summary>
    public abstract float[] Compute();
}
