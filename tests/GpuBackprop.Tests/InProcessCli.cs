using GpuBackprop.Cli;

namespace GpuBackprop.Tests;

/// <summary>
/// Runs the gpubackprop command line in-process with the process's consoles redirected: stderr apart
/// (usage errors and failures), stdout and Spectre's console together (tables, progress, messages). The
/// consoles are process-wide, so runs take one lock: two tests never read each other's output.
/// </summary>
internal static class InProcessCli
{
    private static readonly Lock Gate = new();

    /// <summary>The exit code, what went to stderr, and what went to stdout or Spectre's console.</summary>
    public static (int Code, string Error, string Output) Run(params string[] args)
    {
        lock (Gate)
        {
            TextWriter savedError = Console.Error, savedOut = Console.Out;
            Spectre.Console.IAnsiConsole savedConsole = Spectre.Console.AnsiConsole.Console;
            var error = new StringWriter();
            var output = new StringWriter();
            Console.SetError(error);
            Console.SetOut(output);
            Spectre.Console.AnsiConsole.Console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
            {
                Out = new Spectre.Console.AnsiConsoleOutput(output),
                Interactive = Spectre.Console.InteractionSupport.No,
            });
            try
            {
                return (CliApp.Run(args), error.ToString(), output.ToString());
            }
            finally
            {
                Console.SetError(savedError);
                Console.SetOut(savedOut);
                Spectre.Console.AnsiConsole.Console = savedConsole;
            }
        }
    }
}
