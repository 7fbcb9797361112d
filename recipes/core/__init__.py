"""What every part stands on: configuration, data, models, the run folder, tracking, figures."""
