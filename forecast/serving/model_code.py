"""The pyfunc model as MLflow logs it from code: `log_forecaster` names this file.

MLflow copies it into the logged model and runs it when the model is loaded; the Keras
model and pipeline state come from the model's artifacts in `ForecasterModel.load_context`.
"""

from forecast.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # a served model's log starts without TensorFlow's C++ lines

import mlflow  # noqa: E402

from forecast.serving.threads import configure_threads  # noqa: E402

configure_threads()  # before the model loads: one share of the cores per server worker

from forecast.serving.pyfunc import ForecasterModel  # noqa: E402

mlflow.models.set_model(ForecasterModel())
