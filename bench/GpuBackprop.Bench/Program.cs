using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(GpuBackprop.Bench.SharedSetBenchmarks).Assembly).Run(args);
