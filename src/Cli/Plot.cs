using GpuBackprop.Training;

namespace GpuBackprop.Cli;

/// <summary>The training plot: train loss (left axis) and test accuracy (right axis) per epoch.</summary>
internal static class Plot
{
    /// <summary>
    /// Saves the plot through the atomic writer (rendered to memory first: ScottPlot's own SavePng writes the
    /// file in place, so a full disk or a kill left a truncated or empty PNG); without SkiaSharp's native
    /// library (a trimmed deployment) it says so and goes on. Returns whether the plot was written.
    /// </summary>
    public static bool TrySave(string path, string model, string device, IReadOnlyList<EpochResult> results, IReadOnlyList<StepRecord> steps)
    {
        try
        {
            byte[] png = Build(model, device, results, steps).GetImageBytes(800, 520, ScottPlot.ImageFormat.Png);
            Serialization.AtomicFile.Write(path, s => s.Write(png));
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException)
        {
            Console.Error.WriteLine($"plot skipped: {e.Message}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The plot is drawn from metrics.json's epochs, again after every epoch: a full disk that refused it lost the
            // epoch's checkpoint, written after it (20 KB were free; the checkpoint needed 5). The old plot, if any, stays.
            Console.Error.WriteLine($"plot not written: {Runtime.Messages.OneLine(e.Message)}; the run goes on (the plot is drawn again after the next epoch).");
        }
        return false;
    }


    /// <summary>
    /// The loss of every logged step (x: fractional epoch, so a 1- or 2-epoch run is a curve, not a dot or
    /// an X) and the test accuracy after each epoch on the right axis; whole-number epoch ticks; the legend
    /// below the plot, clear of the data. The accuracy axis runs to 100 from a multiple of 10 below the
    /// lowest epoch (a 3-point gain is not drawn as a cliff), and both axes leave room around the last point.
    /// </summary>
    public static ScottPlot.Plot Build(string model, string device, IReadOnlyList<EpochResult> results, IReadOnlyList<StepRecord> steps)
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
        EpochResult[] validated = results.Where(r => r.ValidationAccuracy is not null).ToArray();
        if (validated.Length > 0)
        {
            var val = plot.Add.Scatter(validated.Select(r => (double)r.Epoch).ToArray(), validated.Select(r => r.ValidationAccuracy!.Value).ToArray());
            val.LegendText = "validation accuracy (%)";
            val.MarkerSize = 6;
            val.LinePattern = ScottPlot.LinePattern.Dashed;
            val.Axes.YAxis = plot.Axes.Right;
        }
        plot.Axes.Left.Label.Text = "train loss";
        plot.Axes.Right.Label.Text = "test accuracy (%)";
        plot.Axes.Bottom.Label.Text = "epoch";
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1);
        double lastEpoch = Math.Max(1, results.Count == 0 ? 1 : results[^1].Epoch);
        // A margin past the last epoch so that its marker is drawn whole.
        plot.Axes.SetLimitsX(0, lastEpoch + 0.04 * lastEpoch);
        double lowest = results.Count == 0 ? 0 : results.Min(r => Math.Min(r.TestAccuracy, r.ValidationAccuracy ?? r.TestAccuracy));
        double bottom = double.IsFinite(lowest) ? Math.Clamp(Math.Floor(lowest / 10) * 10 - (lowest % 10 < 1 ? 10 : 0), 0, 90) : 0;
        plot.Axes.SetLimitsY(bottom, 101, plot.Axes.Right);
        if (steps.Count > 0)
        {
            double top = steps.Max(s => double.IsFinite(s.Loss) ? s.Loss : 0);
            plot.Axes.SetLimitsY(0, top > 0 ? top * 1.05 : 1, plot.Axes.Left);
        }
        plot.Title($"{Models.NameOf(model)} on {device}");
        plot.ShowLegend(ScottPlot.Edge.Bottom);
        return plot;
    }
}
