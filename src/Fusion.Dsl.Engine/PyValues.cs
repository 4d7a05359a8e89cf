using System.Globalization;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The Python values a traced graph computes beside tensors, with Python's semantics: integers and floats (from
/// <c>x.size(0)</c>, <c>h // 16</c>), booleans (<c>h == 224</c> for <c>torch._assert</c>), and tuples (a shape, chunk's
/// pieces, a module's several results) held as <c>object?[]</c>. An operation on values it does not cover answers
/// null, and the caller refuses it as unsupported.
/// </summary>
internal static class PyValues
{
    /// <summary>A Python number as a double.</summary>
    public static double Number(object? v) => Convert.ToDouble(v, CultureInfo.InvariantCulture);

    /// <summary><c>x.shape</c> / <c>x.size()</c>: a tuple of integers.</summary>
    public static object?[] Shape(Tensor x) => [.. x.Dimensions.Select(d => (object?)(long)d)];

    /// <summary><c>a op b</c> on two Python numbers: integers stay integers (checked), except that <c>/</c> gives a float.</summary>
    public static object Arithmetic(TensorOps.Binary op, object? a, object? b)
    {
        if (a is long x && b is long y && op != TensorOps.Binary.Div)
            return op switch
            {
                TensorOps.Binary.Add => checked(x + y),
                TensorOps.Binary.Sub => checked(x - y),
                _ => checked(x * y),
            };
        double p = Number(a), q = Number(b);
        if (op == TensorOps.Binary.Div && q == 0) throw new EngineInputException("division by zero");
        return op switch
        {
            TensorOps.Binary.Add => p + q,
            TensorOps.Binary.Sub => p - q,
            TensorOps.Binary.Mul => p * q,
            _ => p / q,
        };
    }

    /// <summary><c>a // b</c> on Python numbers (rounding toward negative infinity), or null for other operands.</summary>
    public static object? FloorDiv(object? a, object? b)
    {
        switch (a, b)
        {
            case (long x, long y):
                if (y == 0) throw new EngineInputException("integer division by zero");
                var q = x / y;
                return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;
            case (long or double, long or double):
                if (Number(b) == 0) throw new EngineInputException("float floor division by zero");
                return Math.Floor(Number(a) / Number(b));
            default:
                return null;
        }
    }

    /// <summary><c>a == b</c> on Python numbers, booleans and strings, or null for other operands (tensors).</summary>
    public static object? Eq(object? a, object? b) => (a, b) switch
    {
        (long x, long y) => x == y,
        (long or double, long or double) => Number(a) == Number(b),
        (bool x, bool y) => x == y,
        (string x, string y) => x == y,
        (null, null) => true,
        (Tensor, _) or (_, Tensor) => null,
        _ => false,
    };

    /// <summary>Python's truth of a condition (a boolean or a number), or null when it is something else.</summary>
    public static bool? Truth(object? v) => v switch
    {
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        _ => null,
    };

    /// <summary><c>getattr(x, name)</c> for what a traced graph reads of a tensor (<c>shape</c>, <c>ndim</c>), or null.</summary>
    public static object? Attribute(object? target, object? name) => (target, name) switch
    {
        (Tensor t, "shape") => Shape(t),
        (Tensor t, "ndim") => (long)t.Rank,
        _ => null,
    };

    /// <summary><c>seq[index]</c> on a tuple or list (<see cref="PySequence.GetItem"/>).</summary>
    /// <exception cref="EngineInputException">The index is out of range or of another kind, or the value is not a sequence.</exception>
    public static object? GetItem(object? seq, object? index)
    {
        if (seq is not IReadOnlyList<object?> list)
            throw new EngineInputException($"indexing: {GraphInterpreter.Describe(seq)} is not a tensor, tuple or list");
        try { return PySequence.GetItem(list, index); }
        catch (ArgumentException e) { throw new EngineInputException($"indexing: {e.Message}"); }
    }
}
