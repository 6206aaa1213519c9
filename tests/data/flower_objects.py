"""Flower 1.27's own inflatable objects, both ways, for tests/it/objects.rs.

Usage: python flower_objects.py DIR

DIR/messages/<n>.pb are protobuf Messages (content included) written by the
test. For each:

- deflate: the message is rebuilt with every array made from numpy
  (`Array(ndarray)`, so its bytes are numpy's own `np.save`), deflated by
  Flower, and written as DIR/python/<n>.tree (the ObjectTree), <n>.ids (the
  objects in `get_all_nested_objects` order) and DIR/python/objects/<id>;
- inflate: DIR/rust/<n>.tree and DIR/rust/objects/<id>, written by the test
  from floret's objects, are checked the way Flower's object store checks a
  pushed object, pulled and inflated with `pull_and_inflate_object_from_tree`,
  and compared with the message of DIR/messages/<n>.pb;
- the envelope: DIR/python/<n>.envelope is the Message proto a SuperNode
  pushes next to the tree (`remove_content_from_message`, its id the object
  id), and <n>.tree_ids the distinct ids of `iterate_object_tree`.

Prints one JSON object per message.
"""
import json
import os
import sys

from flwr.common.message import Message, remove_content_from_message
from flwr.common.record import Array, ArrayRecord
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.proto.message_pb2 import ObjectTree
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_id,
    get_object_tree,
    iterate_object_tree,
)
from flwr.supercore.inflatable.inflatable_utils import (
    pull_and_inflate_object_from_tree,
    validate_object_content,
)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def from_numpy(message):
    """The message with each array rebuilt from its numpy value; whether
    numpy's bytes equal the ones received."""
    same = True
    for record in message.content.values() if message.has_content() else []:
        if isinstance(record, ArrayRecord):
            for key in list(record.keys()):
                rebuilt = Array(record[key].numpy())
                same = same and rebuilt.data == record[key].data
                record[key] = rebuilt
    return same


def deflate(directory, index, message):
    out = os.path.join(directory, "python")
    tree = get_object_tree(message)
    objects = get_all_nested_objects(message)
    for object_id, obj in objects.items():
        write(os.path.join(out, "objects", object_id), obj.deflate())
    write(os.path.join(out, f"{index}.tree"), tree.SerializeToString())
    write(os.path.join(out, f"{index}.ids"), "\n".join(objects).encode())
    envelope = message_to_proto(remove_content_from_message(message))
    envelope.metadata.message_id = message.object_id
    write(os.path.join(out, f"{index}.envelope"), envelope.SerializeToString())
    tree_ids = list(dict.fromkeys(node.object_id for node in iterate_object_tree(tree)))
    write(os.path.join(out, f"{index}.tree_ids"), "\n".join(tree_ids).encode())


def inflate(directory, index, expected):
    base = os.path.join(directory, "rust")
    tree = ObjectTree.FromString(read(os.path.join(base, f"{index}.tree")))
    store = os.path.join(base, "objects")
    for object_id in os.listdir(store):
        content = read(os.path.join(store, object_id))
        assert get_object_id(content) == object_id, object_id
        validate_object_content(content)
    message = pull_and_inflate_object_from_tree(
        tree,
        lambda object_id: read(os.path.join(store, object_id)),
        lambda object_id: None,
        return_type=Message,
    )
    # What a Flower receiver does next: the id is the object id.
    message.metadata.__dict__["_message_id"] = tree.object_id
    expected.metadata.__dict__["_message_id"] = tree.object_id
    return {
        "inflated_equal": message_to_proto(message) == message_to_proto(expected),
        "redeflated_id": message.object_id,
    }


def main():
    directory = sys.argv[1]
    os.makedirs(os.path.join(directory, "python", "objects"), exist_ok=True)
    names = sorted(os.listdir(os.path.join(directory, "messages")), key=lambda n: int(n.split(".")[0]))
    for name in names:
        index = int(name.split(".")[0])
        proto = ProtoMessage.FromString(read(os.path.join(directory, "messages", name)))
        message = message_from_proto(proto)
        result = {"index": index, "npy_equal": from_numpy(message)}
        deflate(directory, index, message)
        result.update(inflate(directory, index, message_from_proto(proto)))
        print(json.dumps(result), flush=True)


main()
