using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>What one quantized forward pass produced.</summary>
/// <param name="Output">The model's output as a float tensor (a quantized output is dequantized).</param>
/// <param name="QuantizedOutput">The model's output when it is quantized (no <c>DeQuantStub</c> at the end), else null.</param>
/// <param name="LayerOutputs">Each converted layer's last quantized output by path; for <c>DeQuantize</c>, its quantized input.</param>
public sealed record QuantizedForwardResult(Tensor Output, QuantizedTensor? QuantizedOutput, ImmutableDictionary<string, QuantizedTensor> LayerOutputs);

/// <summary>
/// A converted int8 model (PyTorch's <c>convert(prepared)</c>, as a value): the float model's structure and forward
/// graphs, with the quantized layers PyTorch's convert swaps in at their paths. <see cref="Forward(Tensor)"/> runs it as PyTorch's
/// quantized model runs: <c>Quantize</c> quantizes, the quantized layers compute on quantized tensors as PyTorch's onednn
/// engine does, <c>FloatFunctional</c> calls become <c>QFunctional</c> calls, <c>ReLU</c>, <c>MaxPool2d</c>,
/// <c>AdaptiveAvgPool2d</c>, <c>Flatten</c> and reshapes run on quantized tensors, <c>DeQuantize</c> dequantizes, and
/// a part kept float (a None qconfig) runs in this project's float engine.
/// </summary>
public sealed class QuantizedModel
{
    internal QuantizedModel(Module floatModel, ImmutableDictionary<string, QuantizedLayer> layers)
    {
        FloatModel = floatModel;
        Layers = layers;
    }

    /// <summary>The float model whose structure and graphs the quantized forward follows.</summary>
    public Module FloatModel { get; }

    /// <summary>The quantized layers by dotted path.</summary>
    public ImmutableDictionary<string, QuantizedLayer> Layers { get; }

    /// <summary>The quantized forward on <paramref name="input"/>, returning a float tensor (PyTorch's <c>qmodel(x)</c>
    /// after its <c>DeQuantStub</c>; a quantized output is dequantized).</summary>
    /// <exception cref="ArgumentException">The input does not fit, or a module meets a value it cannot take (the message names its path).</exception>
    public Tensor Forward(Tensor input) => Forward(input, null);

    /// <summary>The quantized forward on up to <paramref name="threads"/> cores (every core when null), keeping no
    /// layer's output past its use (<see cref="Run"/> keeps them all for inspection).</summary>
    /// <exception cref="ArgumentException">As <see cref="Forward(Tensor)"/>.</exception>
    public Tensor Forward(Tensor input, int? threads)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.DType != DType.Float32) throw new ArgumentException($"the input must be float32, got {input.DType}", nameof(input));
        return Output(new QuantizedInterpreter(Layers, threads, record: false).Call(FloatModel, input, ""), ImmutableDictionary<string, QuantizedTensor>.Empty).Output;
    }

    /// <summary>The quantized forward, with every converted layer's output.</summary>
    /// <param name="input">A float32 input.</param>
    /// <param name="threads">Cores for the float parts (every core when null).</param>
    /// <exception cref="ArgumentException">The input does not fit, or a module meets a value it cannot take (the message names its path).</exception>
    public QuantizedForwardResult Run(Tensor input, int? threads = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.DType != DType.Float32) throw new ArgumentException($"the input must be float32, got {input.DType}", nameof(input));
        var interpreter = new QuantizedInterpreter(Layers, threads);
        var y = interpreter.Call(FloatModel, input, "");
        return Output(y, interpreter.Outputs.ToImmutableDictionary(StringComparer.Ordinal));
    }

    private static QuantizedForwardResult Output(object? y, ImmutableDictionary<string, QuantizedTensor> outputs) => y switch
    {
        Tensor t => new QuantizedForwardResult(t, null, outputs),
        QuantizedTensor q => new QuantizedForwardResult(q.Dequantize(), q, outputs),
        _ => throw new ArgumentException($"the model returned {QuantizedInterpreter.Describe(y)}, not a tensor"),
    };
}
