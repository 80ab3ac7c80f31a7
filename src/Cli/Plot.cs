using GpuBackprop.Training;

namespace GpuBackprop.Cli;

/// <summary>The training plot: train loss (left axis) and test accuracy (right axis) per epoch.</summary>
internal static class Plot
{
    /// <summary>Saves the plot; without SkiaSharp's native library (a trimmed deployment) it says so and goes on.</summary>
    public static void TrySave(string path, string model, string device, IReadOnlyList<EpochResult> results)
    {
        try
        {
            Save(path, model, device, results);
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException)
        {
            Console.Error.WriteLine($"plot skipped: {e.Message}");
        }
    }

    private static void Save(string path, string model, string device, IReadOnlyList<EpochResult> results)
    {
        double[] epochs = results.Select(r => (double)r.Epoch).ToArray();
        var plot = new ScottPlot.Plot();
        var lossLine = plot.Add.Scatter(epochs, results.Select(r => r.TrainLoss).ToArray());
        lossLine.LegendText = "train loss";
        var accLine = plot.Add.Scatter(epochs, results.Select(r => r.TestAccuracy).ToArray());
        accLine.LegendText = "test accuracy (%)";
        accLine.Axes.YAxis = plot.Axes.Right;
        plot.Axes.Left.Label.Text = "train loss";
        plot.Axes.Right.Label.Text = "test accuracy (%)";
        plot.Axes.Bottom.Label.Text = "epoch";
        plot.Title($"{model} on {device}");
        plot.ShowLegend();
        plot.SavePng(path, 800, 500);
    }
}
