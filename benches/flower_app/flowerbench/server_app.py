"""ServerApp: FedAvg with `strategy.start()` and a central evaluation on the held-out 20%."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flowerbench import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    path, seed = str(config["data-path"]), int(config["seed"])
    x_test, y_test = task.central_test_set(path, seed)

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        loss, accuracy = task.evaluate(arrays.to_numpy_ndarrays(), x_test, y_test)
        return MetricRecord({"central_loss": loss, "central_acc": accuracy})

    strategy = FedAvg(
        fraction_train=float(config["fraction-train"]),
        fraction_evaluate=float(config["fraction-evaluate"]),
    )
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(task.initial_parameters()),
        train_config=ConfigRecord({"lr": float(config["lr"])}),
        num_rounds=int(config["num-server-rounds"]),
        evaluate_fn=central_evaluation,
    )
