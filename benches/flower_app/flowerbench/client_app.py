"""ClientApp: trains and evaluates the logistic regression on the node's partition."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flowerbench import task

app = ClientApp()


def _partition(context: Context):
    config = context.run_config
    return task.load_partition(
        str(config["data-path"]),
        int(config["seed"]),
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
    )


def _received_arrays(msg: Message) -> list[np.ndarray]:
    return msg.content["arrays"].to_numpy_ndarrays()


@app.train()
def train(msg: Message, context: Context) -> Message:
    (x, y), _ = _partition(context)
    config = context.run_config
    train_config = msg.content["config"]
    partition_id = int(context.node_config["partition-id"])
    server_round = int(train_config.get("server-round", 0))
    rng = np.random.default_rng([int(config["seed"]), task.TRAIN, server_round, partition_id])
    parameters, loss = task.train(
        _received_arrays(msg),
        x,
        y,
        epochs=int(config["local-epochs"]),
        lr=float(train_config.get("lr", config["lr"])),
        batch_size=int(config["batch-size"]),
        rng=rng,
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(parameters),
            "metrics": MetricRecord({"train_loss": loss, "num-examples": len(x)}),
        }
    )
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    _, (x, y) = _partition(context)
    loss, accuracy = task.evaluate(_received_arrays(msg), x, y)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(x)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
