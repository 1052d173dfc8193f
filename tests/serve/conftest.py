import contextlib
import threading


@contextlib.contextmanager
def serving(app):
    """`app` served by uvicorn on a free port of 127.0.0.1 in a thread, once its startup has finished; its URL."""
    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    started = threading.Event()
    real_startup = srv.startup

    async def startup(sockets=None):
        await real_startup(sockets)
        started.set()

    srv.startup = startup
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        assert started.wait(60), "the server did not start"
        yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(30)
