using Fusion.Cli.Commands;

namespace Fusion.Cli;

/// <summary>The <c>fusion</c> command: dispatches to its subcommands.</summary>
public static class Program
{
    private const string Usage = """
        usage: fusion <command> [arguments]

        commands:
          inspect MODEL.json | --model NAME [--weights STATE_DICT.safetensors]
                                                 print a model's tree with parameter counts
          fuse MODEL.json | --model NAME (--groups "a,b;c,d" | --groups-file F) [--qat] [--out FILE]
                                                 fuse groups as PyTorch's fuse_modules does, verify, optionally write
          conformance PATH...                    run fusion-fixture/1 cases (files or folders) against PyTorch's results
          demo [--model NAME]                    fuse a zoo network with torchvision's groups and report
          bench --model NAME [--threads N] [--runs N] [--json] [--memory]
                                                 time fusion and forward passes (medians after warm-up),
                                                 or with --memory the peak working set of the forward pass
          auto MODEL.json | --model NAME [--json] [--rules default|extended] [--qat]
                                                 find every group the rules can fuse safely
        """;

    /// <summary>Entry point; returns 0 on success, 1 when the operation is refused or fails, 2 on a usage error.</summary>
    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Out.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        var rest = args.Skip(1).ToArray();
        try
        {
            return args[0] switch
            {
                "inspect" => InspectCommand.Run(rest),
                "fuse" => FuseCommand.Run(rest),
                "conformance" => ConformanceCommand.Run(rest),
                "demo" => DemoCommand.Run(rest),
                "bench" => BenchCommand.Run(rest),
                "auto" => AutoCommand.Run(rest),
                _ => throw new UsageException($"unknown command '{args[0]}'"),
            };
        }
        // A file, a state_dict or a forward pass that is refused: the message names the file, key or module.
        catch (Exception e) when (e is Fusion.Dsl.IO.ModelFormatException or Fusion.Dsl.IO.StateDictException or Fusion.Dsl.Engine.ForwardException)
        {
            Console.Error.WriteLine($"fusion: {(e is Fusion.Dsl.Engine.ForwardException ? "forward failed: " : "")}{e.Message}");
            return 1;
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"fusion: {e.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
    }
}
