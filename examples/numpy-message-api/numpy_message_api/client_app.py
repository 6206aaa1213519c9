"""The ClientApp: trains and evaluates the global model on this node's data."""

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from numpy_message_api import task

app = ClientApp()


def _local_data(context: Context):
    """This node's (train, test) split, from its partition id and the run's seed."""
    return task.load_partition(
        seed=context.run_config["seed"],
        partition_id=context.node_config["partition-id"],
        num_features=context.run_config["num-features"],
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Run a few gradient steps from the global model, send the result back."""
    arrays = msg.content["arrays"]
    config = msg.content["config"]  # sent by the ServerApp (`train_config`)
    (x, y), _ = _local_data(context)

    weights, bias = task.train(
        arrays["weights"].numpy(),
        arrays["bias"].numpy(),
        x,
        y,
        lr=config["lr"],
        steps=config["local-steps"],
    )
    loss, accuracy = task.evaluate(weights, bias, x, y)

    # `context.state` is kept per node from one round to the next.
    if "progress" not in context.state:
        context.state["progress"] = MetricRecord({"rounds-trained": 0})
    progress = context.state["progress"]
    progress["rounds-trained"] += 1

    metrics = MetricRecord(
        {
            "train_loss": loss,
            "train_acc": accuracy,
            "rounds_trained": progress["rounds-trained"],
            "num-examples": len(y),  # FedAvg weighs each reply by this
        }
    )
    arrays = ArrayRecord({"weights": Array(weights), "bias": Array(bias)})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Measure the global model on this node's test split."""
    arrays = msg.content["arrays"]
    _, (x, y) = _local_data(context)

    loss, accuracy = task.evaluate(arrays["weights"].numpy(), arrays["bias"].numpy(), x, y)

    metrics = MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(y)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
