"""The ServerApp: FedAvg over all nodes, plus a central evaluation each round."""

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from numpy_message_api import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train the global model for `num-server-rounds` rounds."""
    config = context.run_config
    seed, num_features = config["seed"], config["num-features"]

    weights, bias = task.init_model(num_features)
    initial_arrays = ArrayRecord({"weights": Array(weights), "bias": Array(bias)})

    x_test, y_test = task.load_central_testset(seed, num_features)

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """The global model on the held-out set (round 0: the initial model)."""
        loss, accuracy = task.evaluate(
            arrays["weights"].numpy(), arrays["bias"].numpy(), x_test, y_test
        )
        return MetricRecord({"central_loss": loss, "central_acc": accuracy})

    strategy = FedAvg(
        fraction_train=config["fraction-train"],
        fraction_evaluate=config["fraction-evaluate"],
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=initial_arrays,
        num_rounds=config["num-server-rounds"],
        train_config=ConfigRecord({"lr": config["lr"], "local-steps": config["local-steps"]}),
        evaluate_fn=central_evaluate,
    )

    final = result.evaluate_metrics_serverapp[config["num-server-rounds"]]
    print(f"Final global model: central accuracy {final['central_acc']:.4f}")
