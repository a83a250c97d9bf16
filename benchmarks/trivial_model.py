"""The reference model of `benchmarks.serving`: a pyfunc that returns its input's last row.

Logged from code with our model's signature (outputs only, as ours since the package coerces
its own inputs), so the scoring server parses the same JSON into the same frame for both; what
our model costs above this is our own work.
"""

import mlflow


class LastRow(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201, ARG002
        return model_input.iloc[-1:]


mlflow.models.set_model(LastRow())
