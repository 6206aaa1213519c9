"""The ServerApp, legacy style: a `server_fn` returning a FedAvg strategy and a round count."""

from flwr.common import Context, Metrics, ndarrays_to_parameters
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg

from sklearn_legacy import task


def weighted_average(metrics: list[tuple[int, Metrics]]) -> Metrics:
    """Average each metric over the clients, weighted by their number of examples."""
    total = sum(num_examples for num_examples, _ in metrics)
    return {
        key: sum(num_examples * m[key] for num_examples, m in metrics) / total
        for key in metrics[0][1]
    }


def server_fn(context: Context) -> ServerAppComponents:
    config = context.run_config
    seed, local_epochs = config["seed"], config["local-epochs"]
    x_test, y_test = task.load_central_testset(seed)
    model = task.create_model(local_epochs)

    def central_evaluate(server_round, parameters, _config):
        """The global model on the held-out fifth of the digits."""
        task.set_parameters(model, parameters)
        loss, accuracy = task.evaluate(model, x_test, y_test)
        return loss, {"accuracy": accuracy}

    strategy = FedAvg(
        fraction_fit=config["fraction-fit"],
        fraction_evaluate=config["fraction-evaluate"],
        initial_parameters=ndarrays_to_parameters(task.initial_parameters()),
        on_fit_config_fn=lambda server_round: {"local-epochs": local_epochs},
        evaluate_fn=central_evaluate,
        fit_metrics_aggregation_fn=weighted_average,
        evaluate_metrics_aggregation_fn=weighted_average,
    )
    return ServerAppComponents(
        strategy=strategy, config=ServerConfig(num_rounds=config["num-server-rounds"])
    )


app = ServerApp(server_fn=server_fn)
