"""Statistics of the measured series: trajectories and replicates (measure), intervals, the paper
scale and windows, profile statistics, the verdict rule."""
