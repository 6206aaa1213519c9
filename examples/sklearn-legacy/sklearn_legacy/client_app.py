"""The ClientApp, legacy style: a `client_fn` that builds a NumPyClient per message."""

from flwr.client import ClientApp, NumPyClient
from flwr.common import Context

from sklearn_legacy import task


class DigitsClient(NumPyClient):
    """Fits and evaluates the global model on one partition of the digits."""

    def __init__(self, train, test) -> None:
        self.x_train, self.y_train = train
        self.x_test, self.y_test = test
        self.model = task.create_model(local_epochs=1)

    def get_parameters(self, config):
        return task.get_parameters(self.model)

    def fit(self, parameters, config):
        """Continue training from the global model for `local-epochs` iterations."""
        task.set_parameters(self.model, parameters)
        self.model.max_iter = config["local-epochs"]  # from the server's `on_fit_config_fn`
        task.fit(self.model, self.x_train, self.y_train)
        loss, accuracy = task.evaluate(self.model, self.x_train, self.y_train)
        metrics = {"train_loss": loss, "train_accuracy": accuracy}
        return task.get_parameters(self.model), len(self.y_train), metrics

    def evaluate(self, parameters, config):
        task.set_parameters(self.model, parameters)
        loss, accuracy = task.evaluate(self.model, self.x_test, self.y_test)
        return loss, len(self.y_test), {"accuracy": accuracy}


def client_fn(context: Context):
    """Called by Flower for every message this node receives."""
    train, test = task.load_partition(
        seed=context.run_config["seed"],
        partition_id=context.node_config["partition-id"],
        num_partitions=context.node_config["num-partitions"],
    )
    return DigitsClient(train, test).to_client()


app = ClientApp(client_fn=client_fn)
