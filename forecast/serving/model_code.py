"""The pyfunc model as MLflow logs it from code: `log_forecaster` names this file.

MLflow copies it into the logged model and runs it when the model is loaded; the Keras
model and pipeline state come from the model's artifacts in `ForecasterModel.load_context`.
"""

import mlflow

from forecast.serving.pyfunc import ForecasterModel

mlflow.models.set_model(ForecasterModel())
