using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Layers;

/// <summary>
/// Deterministic parameter initialisation for models built in code: PyTorch's default for Conv and Linear
/// (<c>kaiming_uniform_(a=sqrt(5))</c>, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias), drawn from a seeded generator
/// so the same seed always gives the same bits.
/// </summary>
public static class Init
{
    /// <summary>A tensor of U(-bound, bound) values from <paramref name="rng"/>.</summary>
    public static Tensor Uniform(Random rng, double bound, params int[] shape)
        => Tensor.Generate(_ => (float)((rng.NextDouble() * 2 - 1) * bound), shape);

    /// <summary>A tensor of normal(0, std) values from <paramref name="rng"/> (Box-Muller).</summary>
    public static Tensor Normal(Random rng, double std, params int[] shape)
        => Tensor.Generate(_ =>
        {
            var u1 = 1.0 - rng.NextDouble();
            var u2 = rng.NextDouble();
            return (float)(std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }, shape);
}
