namespace Fusion.Dsl.Graphs;

/// <summary>
/// A <c>torch.einsum</c> equation read against its operands' shapes, once for the engine and the ONNX exporter: each
/// operand's subscript (spaces removed), the output's (PyTorch's implicit rule when there is no <c>-&gt;</c>: the letters
/// that appear once, in alphabetical order), and every letter's size. Ellipses are not modelled.
/// </summary>
public sealed class EinsumEquation
{
    private EinsumEquation(string text, string[] inputs, string output, IReadOnlyDictionary<char, int> sizes)
    {
        Text = text; Inputs = inputs; Output = output; Sizes = sizes;
    }

    /// <summary>The equation with its spaces removed and its output written out (<c>bghid,bghjd-&gt;bghij</c>).</summary>
    public string Text { get; }

    /// <summary>Each operand's subscript.</summary>
    public IReadOnlyList<string> Inputs { get; }

    /// <summary>The output's subscript.</summary>
    public string Output { get; }

    /// <summary>The size of every letter.</summary>
    public IReadOnlyDictionary<char, int> Sizes { get; }

    /// <summary>The output's shape.</summary>
    public int[] OutputShape => [.. Output.Select(c => Sizes[c])];

    /// <summary>Reads <paramref name="equation"/> for operands of <paramref name="shapes"/>.</summary>
    /// <exception cref="NotSupportedException">An ellipsis (valid in PyTorch, not modelled here).</exception>
    /// <exception cref="ArgumentException">The equation does not fit the operands: a subscript that is not letters, one
    /// per operand, as long as its operand's rank; a letter whose sizes disagree; an output letter no operand has.</exception>
    public static EinsumEquation Read(string equation, IReadOnlyList<int[]> shapes)
    {
        ArgumentNullException.ThrowIfNull(equation);
        ArgumentNullException.ThrowIfNull(shapes);
        var text = string.Concat(equation.Where(c => !char.IsWhiteSpace(c)));
        if (text.Contains("...")) throw new NotSupportedException("an ellipsis ('...'); einsum is computed with every dimension named");
        var arrow = text.IndexOf("->", StringComparison.Ordinal);
        var inputs = (arrow < 0 ? text : text[..arrow]).Split(',');
        if (inputs.Length != shapes.Count) throw new ArgumentException($"the equation names {inputs.Length} operands but {shapes.Count} were given");
        var output = arrow >= 0 ? text[(arrow + 2)..]
            : string.Concat(string.Concat(inputs).GroupBy(c => c).Where(g => g.Count() == 1).Select(g => g.Key).Order());
        foreach (var s in inputs.Append(output))
            if (s.Any(c => !char.IsAsciiLetter(c))) throw new ArgumentException($"subscripts are letters, got '{s}'");
        var sizes = new Dictionary<char, int>();
        for (var i = 0; i < inputs.Length; i++)
        {
            if (inputs[i].Length != shapes[i].Length)
                throw new ArgumentException($"operand {i} has {shapes[i].Length} dimensions [{string.Join(", ", shapes[i])}] but its subscript '{inputs[i]}' names {inputs[i].Length}");
            for (var d = 0; d < shapes[i].Length; d++)
            {
                var letter = inputs[i][d];
                if (sizes.TryGetValue(letter, out var size) && size != shapes[i][d])
                    throw new ArgumentException($"'{letter}' is {size} in one place and {shapes[i][d]} in another (einsum operands are not broadcast here)");
                sizes[letter] = shapes[i][d];
            }
        }
        foreach (var letter in output)
            if (!sizes.ContainsKey(letter)) throw new ArgumentException($"the output's '{letter}' appears in no operand");
        return new EinsumEquation(string.Join(",", inputs) + "->" + output, inputs, output, sizes);
    }
}
