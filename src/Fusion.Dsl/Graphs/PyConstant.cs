namespace Fusion.Dsl.Graphs;

/// <summary>The kinds of Python constant a graph records beside JSON's own scalars.</summary>
public enum PyConstantKind
{
    /// <summary>A <c>slice(start, stop, step)</c>; each part an integer or None.</summary>
    Slice,
    /// <summary><c>...</c> (Ellipsis).</summary>
    Ellipsis,
    /// <summary>A <c>torch.dtype</c> such as <c>torch.float32</c>.</summary>
    DType,
    /// <summary>A <c>torch.device</c> such as <c>cpu</c>.</summary>
    Device,
    /// <summary>A <c>torch.memory_format</c> such as <c>torch.channels_last</c>.</summary>
    MemoryFormat,
}

/// <summary>
/// A Python constant that a graph node passes and JSON has no scalar for: a slice (<c>x[:, 0]</c>), Ellipsis, a dtype,
/// a device or a memory format. Kept exactly so that a call carried as an opaque operation is written back unchanged.
/// </summary>
/// <param name="Kind">Which kind of constant.</param>
/// <param name="Text">The dtype, device or memory format as PyTorch prints it; empty for a slice and Ellipsis.</param>
/// <param name="Start">A slice's start (null: None).</param>
/// <param name="Stop">A slice's stop (null: None).</param>
/// <param name="Step">A slice's step (null: None).</param>
public sealed record PyConstant(PyConstantKind Kind, string Text = "", long? Start = null, long? Stop = null, long? Step = null)
{
    /// <summary>The slice <c>start:stop:step</c>.</summary>
    public static PyConstant Slice(long? start, long? stop, long? step) => new(PyConstantKind.Slice, "", start, stop, step);

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        PyConstantKind.Slice => $"{Start}:{Stop}{(Step is null ? "" : ":" + Step)}",
        PyConstantKind.Ellipsis => "...",
        _ => Text,
    };
}
