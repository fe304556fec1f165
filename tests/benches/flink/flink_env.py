"""What the Flink baselines share: a streaming TableEnvironment on a local
mini-cluster at a given parallelism, its temporary files under one folder,
and file URIs for the filesystem connector."""
import os


def file_uri(path):
    return "file://" + os.path.abspath(path)


def table_env(parallelism, work, extra=None):
    """A streaming TableEnvironment with `parallelism` slots, io.tmp.dirs
    under `work`, any port for its REST endpoint, and `extra` settings."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    n = str(parallelism)
    settings = {
        "execution.runtime-mode": "streaming",
        "parallelism.default": n,
        "taskmanager.numberOfTaskSlots": n,
        # RocksDB's files (if chosen) under the temporary folder too.
        "io.tmp.dirs": os.path.join(work, "io"),
        "rest.bind-port": "0",
    }
    settings.update(extra or {})
    for k, v in settings.items():
        conf.set_string(k, v)
    os.makedirs(os.path.join(work, "io"))
    env = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    return TableEnvironment.create(env)
