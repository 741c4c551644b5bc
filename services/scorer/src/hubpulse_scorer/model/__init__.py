"""The trend model: labels, training, calibrated scoring, explanations, backtest and the artifact format."""
