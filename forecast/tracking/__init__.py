"""MLflow: tracked runs, metrics and artifacts (`runs`), the model registry and its
champion alias (`registry`)."""
