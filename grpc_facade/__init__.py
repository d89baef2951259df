"""The gRPC facade: the service's front door, and the tools around it.

- ``server.py``     builds and runs the gRPC server (``python -m grpc_facade.server``)
- ``servicers.py``  the four services, mapping messages to ``pipeline.py``
- ``pipeline.py``   stores the image in Redis and runs the Celery task graph (no gRPC)
- ``messages.py``   turns result documents into protobuf messages
- ``health.py``     the standard gRPC health service, fed by Redis and worker checks
- ``client.py``     the command-line client (``python -m grpc_facade.client``)
- ``stack.py``      starts Redis, workers, facade and Flower together (``run.sh``)
"""
