using GpuBackprop.Cli;

return CliApp.Run(args);
