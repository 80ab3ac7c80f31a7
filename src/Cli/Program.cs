using GpuBackprop.Cli;

return await CommandLine.RunAsync(args);
