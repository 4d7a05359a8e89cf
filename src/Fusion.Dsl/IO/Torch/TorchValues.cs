namespace Fusion.Dsl.IO;

/// <summary>
/// A quantized tensor as a <c>torch.save</c> file holds it (PyTorch 1.13's <c>_rebuild_qtensor</c>): the 8-bit integers of
/// a <c>QInt8Storage</c> (<paramref name="Signed"/>) or <c>QUInt8Storage</c>, row-major, and one scale and zero point
/// (<paramref name="Axis"/> null, <c>per_tensor_affine</c>) or one per slice along the axis (<c>per_channel_affine</c>).
/// The IO layer neither checks nor interprets the parameters: the quantization assembly does, naming the key.
/// </summary>
internal sealed record TorchQTensor(bool Signed, int[] Shape, int[] Values, double[] Scales, long[] ZeroPoints, int? Axis);

/// <summary>A torch dtype pickled as a value (<c>torch.qint8</c>, a quantized Linear's <c>_packed_params.dtype</c>).</summary>
internal sealed record TorchDType(string Name);

/// <summary>
/// A quantized model's state_dict as read from or written to a <c>torch.save</c> file: the keys in order with values that
/// are a <see cref="Tensors.Tensor"/>, a <see cref="TorchQTensor"/>, a <see cref="TorchDType"/>, None (null) or a tuple of
/// those (<c>object?[]</c>, the packed params' <c>(weight, bias)</c>), and the <c>_metadata</c> versions by module path
/// (a quantized Linear loads its packed params only when its version is 3).
/// </summary>
internal sealed record TorchValueState(IReadOnlyList<KeyValuePair<string, object?>> Items, IReadOnlyList<KeyValuePair<string, long>> Versions);
