using System.CommandLine;
using Fusion.Cli.Commands;
using Fusion.Dsl.Engine;
using Fusion.Dsl.IO;
using Fusion.Dsl.Rules;

namespace Fusion.Cli;

/// <summary>
/// The <c>fusion</c> command. Parsing, per-command help (<c>fusion COMMAND --help</c>) and <c>--version</c> come from
/// System.CommandLine; the exit codes are this program's: 0 success, 1 an operation refused or failed (one line on standard
/// error naming the file, key, module or group), 2 a usage error (the message and the command's own usage).
/// </summary>
public static class Program
{
    /// <summary>Entry point; returns 0 on success, 1 when the operation is refused or fails, 2 on a usage error.</summary>
    public static int Main(string[] args)
    {
        var root = Build();
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0) return Usage(root, parsed, parsed.Errors.Select(e => e.Message));
        // A bare `fusion` asks for nothing: show what there is, as a usage error.
        if (parsed.CommandResult.Command == root && parsed.Action is null) return Usage(root, parsed, []);
        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            return Usage(root, parsed, [e.Message]);
        }
        catch (FusionException e)
        {
            // The message starts with the kind (NoRule: cannot fuse group 1 ...): printed once. Its remedy speaks to the
            // library's user (call Eval()); on the command line the same step is an option.
            Console.Error.WriteLine($"fusion: {e.Message}");
            if (e.Kind is FusionErrorKind.TrainingMode or FusionErrorKind.MixedModes)
                Console.Error.WriteLine("fusion: on the command line, --eval puts the whole model in eval mode first (as model.eval() does); --qat fuses as fuse_modules_qat");
            return 1;
        }
        // A file, a state_dict, a forward pass or an export that is refused: the message names the file, key or module.
        catch (Exception e) when (e is ModelFormatException or StateDictException or Fusion.Dsl.Algebra.ModuleException)
        {
            Console.Error.WriteLine($"fusion: {(e is ForwardException ? "forward failed: " : "")}{e.Message}");
            return 1;
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"fusion: {e.Message}");
            return 1;
        }
        catch (UnauthorizedAccessException e)
        {
            Console.Error.WriteLine($"fusion: {e.Message}");
            return 1;
        }
    }

    /// <summary>The command tree.</summary>
    public static RootCommand Build()
    {
        var root = new RootCommand("PyTorch's module fusion (fuse_modules, fuse_modules_qat) for .NET: inspect, fuse, verify and benchmark models.");
        foreach (var c in new[]
                 {
                     InspectCommand.Create(), FuseCommand.Create(), AutoCommand.Create(), ConformanceCommand.Create(),
                     DemoCommand.Create(), BenchCommand.Create(), ExportCommand.Create(), RunCommand.Create(), QuantizeCommand.Create(),
                 })
            root.Subcommands.Add(c);
        return root;
    }

    /// <summary>Prints the problems and the usage of the command that was meant, and returns 2.</summary>
    private static int Usage(RootCommand root, ParseResult parsed, IEnumerable<string> problems)
    {
        foreach (var p in problems) Console.Error.WriteLine($"fusion: {p}");
        var path = new List<string>();
        for (var c = parsed.CommandResult; c is not null && c.Command != root; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            path.Insert(0, c.Command.Name);
        root.Parse([.. path, "--help"]).Invoke(new InvocationConfiguration { Output = Console.Error });
        return 2;
    }
}
