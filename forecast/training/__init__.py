"""Fitting models: the Keras fit loop (`loop`), config + data -> a trained forecaster
(`fitting`), and where training runs (`distribute`, `tf.distribute` strategies)."""
