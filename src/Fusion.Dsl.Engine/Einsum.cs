using Fusion.Dsl.Graphs;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// <c>torch.einsum</c> for the equations networks write: one operand (a permutation) or two operands whose every
/// letter appears once per operand (maxvit's <c>"B G H I D, B G H J D -> B G H I J"</c>). Two operands are computed as
/// PyTorch does, as one batched matrix product: letters in both operands and the output are the batch, letters in both
/// operands only are contracted, the rest belong to one side; each side is permuted to [batch, own, contracted] and the
/// product is permuted to the output's order. Ellipses, repeated letters (diagonals) and letters summed out of one
/// operand alone are refused by name.
/// </summary>
internal static class Einsum
{
    /// <summary>Evaluates <paramref name="equation"/> on <paramref name="operands"/>.</summary>
    /// <exception cref="EngineInputException">The equation is malformed, does not fit the operands, or uses a form the
    /// engine does not compute.</exception>
    public static Tensor Run(string equation, IReadOnlyList<Tensor> operands, Pass pass)
    {
        if (operands.Count is < 1 or > 2)
            throw Error(equation, $"{operands.Count} operands; the engine computes einsum of one or two", unsupported: true);
        for (var i = 0; i < operands.Count; i++)
            if (operands[i].DType != DType.Float32) throw Error(equation, $"operand {i} is {operands[i].DType}; the engine computes float32");
        EinsumEquation eq;
        try { eq = EinsumEquation.Read(equation, [.. operands.Select(x => x.Shape.ToArray())]); }
        catch (NotSupportedException e) { throw Error(equation, e.Message, unsupported: true); }
        catch (ArgumentException e) { throw Error(equation, e.Message); }
        var (inputs, output, sizes) = (eq.Inputs, eq.Output, eq.Sizes);
        foreach (var s in inputs.Append(output))
            if (s.Distinct().Count() != s.Length)
                throw Error(equation, $"'{s}' repeats a letter (a diagonal); the engine does not compute that form", unsupported: true);

        if (operands.Count == 1)
        {
            if (output.Length != inputs[0].Length)
                throw Error(equation, "a one-operand einsum that sums dimensions out; the engine computes permutations only", unsupported: true);
            return ShapeKernels.Permute(operands[0], [.. output.Select(c => inputs[0].IndexOf(c))]);
        }

        string a = inputs[0], b = inputs[1];
        foreach (var letter in a.Concat(b))
            if (!output.Contains(letter) && !(a.Contains(letter) && b.Contains(letter)))
                throw Error(equation, $"'{letter}' is summed out of one operand alone; the engine computes products whose summed letters appear in both operands", unsupported: true);
        var batch = output.Where(c => a.Contains(c) && b.Contains(c)).ToArray();
        var left = output.Where(c => a.Contains(c) && !b.Contains(c)).ToArray();
        var right = output.Where(c => b.Contains(c) && !a.Contains(c)).ToArray();
        var summed = a.Where(c => b.Contains(c) && !output.Contains(c)).ToArray();

        int Product(IEnumerable<char> letters) => letters.Aggregate(1, (p, c) => checked(p * sizes[c]));
        var (nb, m, n, k) = (Product(batch), Product(left), Product(right), Product(summed));
        var lhs = Arrange(operands[0], a, [.. batch, .. left, .. summed], nb, m, k);
        var rhs = Arrange(operands[1], b, [.. batch, .. summed, .. right], nb, k, n);
        var product = MatMulKernels.Bmm(lhs, rhs, pass);
        char[] produced = [.. batch, .. left, .. right];
        var unfolded = product.Reshape([.. produced.Select(c => sizes[c])]);
        var order = output.Select(c => Array.IndexOf(produced, c)).ToArray();
        return order.Select((p, i) => p == i).All(x => x) ? unfolded : ShapeKernels.Permute(unfolded, order);
    }

    /// <summary>An operand permuted to <paramref name="order"/> and viewed as <c>[rows0, rows1, rows2]</c>.</summary>
    private static Tensor Arrange(Tensor x, string subscript, char[] order, int rows0, int rows1, int rows2)
    {
        var dims = order.Select(c => subscript.IndexOf(c)).ToArray();
        var permuted = dims.Select((p, i) => p == i).All(same => same) ? x : ShapeKernels.Permute(x, dims);
        return permuted.Reshape(rows0, rows1, rows2);
    }

    private static EngineInputException Error(string equation, string what, bool unsupported = false)
        => new($"einsum '{equation}': {what}", unsupported);
}
