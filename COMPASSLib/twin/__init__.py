"""The twin: per-organ feature trajectories -> GRU autoencoder latent trajectory -> logistic regression
risk after every fraction (model.CompassTwin), its evaluation (evaluate), baselines and persistence."""
