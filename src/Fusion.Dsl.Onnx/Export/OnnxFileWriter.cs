using System.Runtime.InteropServices;
using Fusion.Dsl.IO;
using Fusion.Dsl.Onnx.Proto;
using Fusion.Dsl.Tensors;
using Google.Protobuf;

namespace Fusion.Dsl.Onnx.Export;

/// <summary>
/// Writes a model to an <c>.onnx</c> file through <see cref="OutputFile"/> (a temporary file beside the resolved target,
/// renamed over it when complete; a directory, device or pipe is refused),
/// streaming the initializers: the graph's nodes go through the generated <see cref="ModelProto"/>, and each tensor's
/// elements are copied straight from the model's storage into the file as the <c>raw_data</c> of its <c>TensorProto</c>,
/// so no second copy of the weights is built in memory (protobuf fields may come in any order, and repeated fields
/// concatenate, so the initializers can follow the rest of the graph).
/// </summary>
internal static class OnnxFileWriter
{
    private const int GraphField = 7;
    private const int InitializerField = 5;
    private const int RawDataField = 9;

    /// <summary>Writes <paramref name="model"/> (whose graph has no initializers yet) plus <paramref name="initializers"/>.</summary>
    /// <exception cref="OnnxExportException">The model would exceed protobuf's 2 GiB message limit.</exception>
    /// <exception cref="ModelFormatException">The target is refused or cannot be written (see <see cref="OutputFile"/>).</exception>
    public static void Write(string path, ModelProto model, IReadOnlyList<KeyValuePair<string, Tensor>> initializers, bool externalData = false)
    {
        // Past 2 GiB (regnet_y_128gf, vit_h_14) one protobuf message cannot hold the weights: they go beside it.
        var inline = initializers.Sum(kv => kv.Value.ByteCount);
        if (externalData || inline + model.CalculateSize() > int.MaxValue - (1 << 20))
        {
            WriteExternal(path, model, initializers);
            return;
        }
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("ONNX raw_data is little-endian; this exporter writes it from memory as is");
        var graph = model.Graph;
        model.Graph = null;
        var headers = new List<(TensorProto Header, int Size, Tensor Tensor)>(initializers.Count);
        long graphSize = graph.CalculateSize();
        foreach (var (name, tensor) in initializers)
        {
            var header = new TensorProto
            {
                Name = name,
                DataType = (int)(tensor.DType == DType.Float32 ? TensorProto.Types.DataType.Float : TensorProto.Types.DataType.Int64),
            };
            foreach (var d in tensor.Shape) header.Dims.Add(d);
            var bytes = tensor.ByteCount;
            var size = header.CalculateSize() + CodedOutputStream.ComputeTagSize(RawDataField) + CodedOutputStream.ComputeLengthSize((int)Math.Min(bytes, int.MaxValue)) + bytes;
            if (size > int.MaxValue) throw new OnnxExportException("", "model", $"tensor '{name}' alone exceeds protobuf's 2 GiB limit");
            headers.Add((header, (int)size, tensor));
            graphSize += CodedOutputStream.ComputeTagSize(InitializerField) + CodedOutputStream.ComputeLengthSize((int)size) + size;
        }
        if (graphSize + model.CalculateSize() + 16 > int.MaxValue)
            throw new OnnxExportException("", "model", $"the model needs {graphSize} bytes, over protobuf's 2 GiB limit for one file (external data is not written)");

        try
        {
            OutputFile.Write(path, file =>
            {
                using (var output = new CodedOutputStream(file, leaveOpen: true))
                {
                    model.WriteTo(output);
                    output.WriteTag(GraphField, WireFormat.WireType.LengthDelimited);
                    output.WriteLength((int)graphSize);
                    graph.WriteTo(output);
                    foreach (var (header, size, tensor) in headers)
                    {
                        output.WriteTag(InitializerField, WireFormat.WireType.LengthDelimited);
                        output.WriteLength(size);
                        header.WriteTo(output);
                        output.WriteTag(RawDataField, WireFormat.WireType.LengthDelimited);
                        output.WriteLength((int)tensor.ByteCount);
                        output.Flush();
                        file.Write(tensor.DType == DType.Float32 ? MemoryMarshal.AsBytes(tensor.Float32) : MemoryMarshal.AsBytes(tensor.Int64));
                    }
                }
                file.Flush();
            });
        }
        finally
        {
            model.Graph = graph;
        }
    }

    /// <summary>
    /// Writes the initializers to <c>NAME.data</c> beside <paramref name="path"/> (each at an offset aligned to 64 bytes,
    /// as onnx's own writer aligns large tensors) and the model with external-data references to it; both files are
    /// replaced together (<see cref="OutputFile.WriteAll"/>), so a failure leaves neither half-written.
    /// </summary>
    private static void WriteExternal(string path, ModelProto model, IReadOnlyList<KeyValuePair<string, Tensor>> initializers)
    {
        var dataName = Path.GetFileName(path) + ".data";
        var dataPath = Path.Join(Path.GetDirectoryName(path), dataName);
        var withData = model.Clone();
        var offsets = new long[initializers.Count];
        long offset = 0;
        for (var i = 0; i < initializers.Count; i++)
        {
            var (name, tensor) = initializers[i];
            offset = (offset + 63) / 64 * 64;
            offsets[i] = offset;
            var header = new TensorProto
            {
                Name = name,
                DataType = (int)(tensor.DType == DType.Float32 ? TensorProto.Types.DataType.Float : TensorProto.Types.DataType.Int64),
                DataLocation = TensorProto.Types.DataLocation.External,
            };
            foreach (var d in tensor.Shape) header.Dims.Add(d);
            header.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = dataName });
            header.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            header.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = tensor.ByteCount.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            withData.Graph.Initializer.Add(header);
            offset += tensor.ByteCount;
        }
        if (withData.CalculateSize() > int.MaxValue)
            throw new OnnxExportException("", "model", "the graph alone, without its weights, exceeds protobuf's 2 GiB limit");
        OutputFile.WriteAll([
            (dataPath, file =>
            {
                long at = 0;
                for (var i = 0; i < initializers.Count; i++)
                {
                    var tensor = initializers[i].Value;
                    if (offsets[i] > at) file.Write(new byte[offsets[i] - at]);
                    file.Write(tensor.DType == DType.Float32 ? MemoryMarshal.AsBytes(tensor.Float32) : MemoryMarshal.AsBytes(tensor.Int64));
                    at = offsets[i] + tensor.ByteCount;
                }
            }),
            (path, file => withData.WriteTo(file)),
        ]);
    }
}
