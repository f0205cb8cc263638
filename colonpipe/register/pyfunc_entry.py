"""MLflow "models from code" file of the servable ColonGPT (see ``colonpipe.register.pyfunc``).

``mlflow.pyfunc.log_model(python_model=<this file>)`` copies it into the logged model; loading
the model runs it, and ``set_model`` hands MLflow the ``PythonModel`` (no pickle involved).
"""

import mlflow

from colonpipe.register.pyfunc import ColonGPTPyfunc

mlflow.models.set_model(ColonGPTPyfunc())
