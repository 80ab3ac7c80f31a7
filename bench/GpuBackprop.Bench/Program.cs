using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(GpuBackprop.Bench.ConvBenchmarks).Assembly).Run(args);
