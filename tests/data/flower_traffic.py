"""Flower 1.27's own count of a message's Fleet API traffic (what its SuperLink
adds to Run.bytes_sent / bytes_recv), for messages given as protobuf files.

Usage: python flower_traffic.py pull|push FILE...  -> one JSON [sent, recv] per line
"""
import json
import sys

from flwr.common.message import remove_content_from_message
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.fleet_pb2 import (
    PullMessagesRequest,
    PullMessagesResponse,
    PushMessagesRequest,
    PushMessagesResponse,
    Reconnect,
)
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.proto.node_pb2 import Node
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_tree,
    iterate_object_tree,
)


def count(kind, path):
    with open(path, "rb") as f:
        message = message_from_proto(ProtoMessage.FromString(f.read()))
    tree = get_object_tree(message)
    objects = get_all_nested_objects(message)
    ids = [node.object_id for node in iterate_object_tree(tree)]
    # PullObject / PushObject: Flower counts each object's content length.
    contents = sum(len(objects[object_id].deflate()) for object_id in ids)
    # The message as the SuperLink stores and sends it: without content, its
    # id being its object id.
    envelope = message_to_proto(remove_content_from_message(message))
    envelope.metadata.message_id = message.object_id
    if kind == "pull":
        node = Node(node_id=message.metadata.dst_node_id)
        recv = PullMessagesRequest(node=node).ByteSize()
        sent = PullMessagesResponse(
            messages_list=[envelope], message_object_trees=[tree]
        ).ByteSize() + contents
    else:
        node = Node(node_id=message.metadata.src_node_id)
        recv = PushMessagesRequest(
            node=node,
            messages_list=[envelope],
            message_object_trees=[tree],
            clientapp_runtime_list=[0.125],
        ).ByteSize() + contents
        sent = PushMessagesResponse(
            reconnect=Reconnect(reconnect=5),
            results={message.object_id: 0},
            objects_to_push=ids,
        ).ByteSize()
    return [sent, recv]


kind = sys.argv[1]
for path in sys.argv[2:]:
    print(json.dumps(count(kind, path)))
