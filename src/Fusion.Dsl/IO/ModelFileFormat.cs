namespace Fusion.Dsl.IO;

/// <summary>The kinds of file a model or its weights come in, as <see cref="ModelFileKind"/> tells them apart by content.</summary>
public enum ModelFileFormat
{
    /// <summary>None of the others: neither the content nor the extension names a format this library reads.</summary>
    Unknown,

    /// <summary>A JSON object: this project's <c>fusion-model/1</c> or <c>fusion-fixture/1</c> file, told apart by its
    /// <c>format</c> field (<see cref="ModelInput.JsonFormat"/>).</summary>
    Json,

    /// <summary>A <c>torch.save</c> checkpoint: a zip whose first entry is <c>FOLDER/data.pkl</c> (or a legacy pre-1.6 file).</summary>
    TorchCheckpoint,

    /// <summary>A safetensors file: an 8-byte little-endian header length, then the JSON header.</summary>
    SafeTensors,

    /// <summary>An ONNX <c>ModelProto</c> (protobuf).</summary>
    Onnx,
}
