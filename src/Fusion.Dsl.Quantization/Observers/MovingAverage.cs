namespace Fusion.Dsl.Quantization;

/// <summary>The moving-average update the two moving-average observers share.</summary>
internal static class MovingAverage
{
    /// <summary><c>running + c * (current - running)</c>, each operation rounded to float32 as PyTorch's tensors are.</summary>
    public static float Step(float running, float current, float c) => running + c * (current - running);

    /// <summary>Refuses an averaging constant outside (0, 1].</summary>
    public static void RequireConstant(float c, string observer)
    {
        if (!(c > 0f && c <= 1f))
            throw new ArgumentOutOfRangeException(nameof(c), c, $"{observer}'s averaging constant must lie in (0, 1]");
    }
}
