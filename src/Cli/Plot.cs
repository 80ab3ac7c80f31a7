using GpuBackprop.Training;

namespace GpuBackprop.Cli;

/// <summary>The training plot: train loss (left axis) and test accuracy (right axis) per epoch.</summary>
internal static class Plot
{
    /// <summary>Saves the plot; without SkiaSharp's native library (a trimmed deployment) it says so and goes on.</summary>
    public static void TrySave(string path, string model, string device, IReadOnlyList<EpochResult> results, IReadOnlyList<StepRecord> steps)
    {
        try
        {
            Save(path, model, device, results, steps);
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException)
        {
            Console.Error.WriteLine($"plot skipped: {e.Message}");
        }
    }

    /// <summary>
    /// The loss of every logged step (x: fractional epoch, so a 1- or 2-epoch run is a curve, not a dot or
    /// an X) and the test accuracy after each epoch on the right axis; whole-number epoch ticks; the legend
    /// below the plot, clear of the data.
    /// </summary>
    private static void Save(string path, string model, string device, IReadOnlyList<EpochResult> results, IReadOnlyList<StepRecord> steps)
    {
        var plot = new ScottPlot.Plot();
        if (steps.Count > 0)
        {
            double[] x = steps.Select(s => s.Epoch - 1 + (double)s.EpochStep / s.EpochSteps).ToArray();
            var loss = plot.Add.Scatter(x, steps.Select(s => s.Loss).ToArray());
            loss.LegendText = "train loss (logged steps)";
            loss.MarkerSize = 0;
        }
        var accuracy = plot.Add.Scatter(results.Select(r => (double)r.Epoch).ToArray(), results.Select(r => r.TestAccuracy).ToArray());
        accuracy.LegendText = "test accuracy after each epoch (%)";
        accuracy.MarkerSize = 8;
        accuracy.Axes.YAxis = plot.Axes.Right;
        plot.Axes.Left.Label.Text = "train loss";
        plot.Axes.Right.Label.Text = "test accuracy (%)";
        plot.Axes.Bottom.Label.Text = "epoch";
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1);
        plot.Axes.SetLimitsX(0, Math.Max(1, results.Count == 0 ? 1 : results[^1].Epoch));
        plot.Title($"{model} on {device}");
        plot.ShowLegend(ScottPlot.Edge.Bottom);
        plot.SavePng(path, 800, 520);
    }
}
