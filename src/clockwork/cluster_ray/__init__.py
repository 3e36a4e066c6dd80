"""Workers placed, restarted and fed by Ray (``clockwork serve --ray``, ``clockwork controller
--ray``); the timed path stays on our own links.

Ray carries the lifecycle: a ``RayWorkerPool`` (in the controller's process) starts one worker
actor per GPU of every node (``workers_per_node`` on nodes without GPUs), each in a placement
group of its own on its node (one bundle, ``num_gpus=1``: Ray hands it its own device, kept
reserved across its restarts; the group goes when the worker is let go), restarted by Ray on
failure (``max_restarts``) after a backoff, and starts more as nodes join. Each actor runs our
``WorkerService`` on its own listening socket, in its own event loop thread, and reports its
address; the controller connects to it with the transport, handshake (the cluster secret, passed
to the actor through Ray, never argv) and clock sync it uses for any worker. A lost actor is a
lost link (``WorkerLost``); a restarted one listens on its former port and re-joins.

Model files reach nodes without the repository's directory through a ``RepositoryServer`` actor
on the controller's node: each worker copies what it lacks, checks every file's sha256, and keeps
it in a content-addressed cache on its own disk; it syncs again before each rescan, so a model
added while serving reaches every worker.

``clockwork serve --ray --ray-controller`` puts the controller and its front door in an actor too
(``RayControllerActor``), which Ray restarts; its workers are named and detached so that they
outlive it, and a restarted one finds them and re-learns what they hold.

Nothing here imports Ray at module level: it is an optional extra (``clockwork[ray]``).
"""
