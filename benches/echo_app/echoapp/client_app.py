"""A ClientApp that does what every training ClientApp does with the model,
and nothing else: reads the received arrays as numpy arrays and replies with
them in a new ArrayRecord, plus a metric. What one call costs beyond that is
the runtime's."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    content = RecordDict(
        {
            "arrays": ArrayRecord(arrays),
            "metrics": MetricRecord({"num-examples": 1}),
        }
    )
    return Message(content=content, reply_to=msg)
