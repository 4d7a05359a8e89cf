using System.Runtime.CompilerServices;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Zoo;

/// <summary>
/// The zoo's seeded generator (xoshiro256**, seeded through SplitMix64). Each tensor gets its own stream derived from the
/// model seed and the tensor's <c>state_dict</c> key, so a tensor's values depend on nothing but (seed, key): building
/// order and the rest of the network cannot shift them. Fills whole float arrays and hands them to
/// <see cref="Tensor"/> without a copy, which keeps a 25M-parameter network fast to build.
/// </summary>
/// <remarks>Values are bit-identical for a seed on a given runtime; the normal draws use <see cref="Math.Log(double)"/>,
/// whose last bit is the platform math library's.</remarks>
internal sealed class ZooRandom
{
    private ulong _s0, _s1, _s2, _s3;

    private ZooRandom(ulong seed)
    {
        _s0 = SplitMix(ref seed); _s1 = SplitMix(ref seed); _s2 = SplitMix(ref seed); _s3 = SplitMix(ref seed);
    }

    /// <summary>The stream for tensor <paramref name="key"/> of a model built with <paramref name="seed"/>.</summary>
    public static ZooRandom For(int seed, string key)
    {
        // FNV-1a over the key: string.GetHashCode is randomised per process and would break reproducibility.
        var h = 14695981039346656037UL;
        foreach (var c in key) { h ^= c; h *= 1099511628211UL; }
        var s = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL;
        return new ZooRandom(h ^ SplitMix(ref s));
    }

    /// <summary>The next 64 random bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong NextUInt64()
    {
        var result = BitRotate(_s1 * 5, 7) * 9;
        var t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
        _s2 ^= t;
        _s3 = BitRotate(_s3, 45);
        return result;
    }

    /// <summary>A double uniform in [0, 1) with 53 random bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A float32 tensor of U(<paramref name="low"/>, <paramref name="high"/>) values.</summary>
    public Tensor Uniform(double low, double high, params int[] shape)
    {
        var width = high - low;
        return Tensor.Create(data =>
        {
            for (var i = 0; i < data.Length; i++) data[i] = (float)(low + width * NextDouble());
        }, shape);
    }

    /// <summary>A float32 tensor of N(<paramref name="mean"/>, <paramref name="std"/>²) values (Marsaglia's polar method:
    /// two normals per accepted pair, no trigonometry).</summary>
    public Tensor Normal(double mean, double std, params int[] shape)
        => Tensor.Create(data =>
        {
            var i = 0;
            while (i < data.Length)
            {
                double u, v, s;
                do
                {
                    u = 2 * NextDouble() - 1;
                    v = 2 * NextDouble() - 1;
                    s = u * u + v * v;
                } while (s >= 1 || s == 0);
                var f = Math.Sqrt(-2 * Math.Log(s) / s);
                data[i++] = (float)(mean + std * u * f);
                if (i < data.Length) data[i++] = (float)(mean + std * v * f);
            }
        }, shape);

    private static ulong SplitMix(ref ulong x)
    {
        var z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong BitRotate(ulong x, int k) => (x << k) | (x >> (64 - k));
}
