"""An S3 endpoint for tests that fauxqs cannot serve: OpenStack Swift's s3api (Debian's python3-swift).

fauxqs (the embedded endpoint) cannot list multipart uploads, so the S3 store's paging, cutoff and
NoSuchUpload handling in abortIncompleteUploads would never meet a real server. Swift's s3api lists
them with real initiation times, honours max-uploads/key-marker/upload-id-marker, and verifies
AWS signatures (tempauth). Everything runs in this one process on loopback: account, container
and an in-memory object server, and the proxy with s3api in front.

Usage: python3 swift-s3.py DIR  ->  prints one JSON line {"endpoint", "accessKeyId", "secretAccessKey"}
when it is ready, and serves until SIGTERM. DIR holds the rings and configs (the caller removes it).
"""
import json
import os
import signal
import sys

import eventlet

eventlet.monkey_patch()

from eventlet import wsgi  # noqa: E402

import swift.common.utils as swift_utils  # noqa: E402

work = sys.argv[1]
os.makedirs(os.path.join(work, 'devices', 'd1'), exist_ok=True)
swift_conf = os.path.join(work, 'swift.conf')
with open(swift_conf, 'w') as f:
    f.write('[swift-hash]\nswift_hash_path_prefix = vcsa-backup-test\nswift_hash_path_suffix = vcsa-backup-test\n'
            '[storage-policy:0]\nname = Policy-0\ndefault = yes\n')
# Swift reads /etc/swift/swift.conf unless told otherwise; this process is told otherwise.
swift_utils.SWIFT_CONF_FILE = swift_conf
swift_utils.HASH_PATH_PREFIX = b''
swift_utils.HASH_PATH_SUFFIX = b''
swift_utils.validate_hash_conf()

from swift.common import constraints, storage_policy  # noqa: E402
from swift.common.ring import RingBuilder  # noqa: E402
from swift.common.wsgi import loadapp  # noqa: E402

storage_policy.reload_storage_policies()
constraints.reload_constraints()

sockets = {name: eventlet.listen(('127.0.0.1', 0)) for name in ('proxy', 'account', 'container', 'object')}
ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}

for name in ('account', 'container', 'object'):
    builder = RingBuilder(4, 1, 1)
    builder.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': ports[name], 'device': 'd1', 'weight': 1})
    builder.rebalance()
    builder.get_ring().save(os.path.join(work, f'{name}.ring.gz'))

common = f'[DEFAULT]\nswift_dir = {work}\ndevices = {work}/devices\nmount_check = false\nlog_level = ERROR\nlog_facility = LOG_LOCAL0\n'
configs = {
    'account': common + '[pipeline:main]\npipeline = account-server\n[app:account-server]\nuse = egg:swift#account\n',
    'container': common + '[pipeline:main]\npipeline = container-server\n[app:container-server]\nuse = egg:swift#container\n',
    'object': common + '[pipeline:main]\npipeline = object-server\n[app:object-server]\nuse = egg:swift#mem_object\n',
    'proxy': common
    + '[pipeline:main]\n'
    + 'pipeline = catch_errors gatekeeper proxy-logging dict-cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server\n'
    + '[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n'
    + '[filter:catch_errors]\nuse = egg:swift#catch_errors\n'
    + '[filter:gatekeeper]\nuse = egg:swift#gatekeeper\n'
    + '[filter:proxy-logging]\nuse = egg:swift#proxy_logging\n'
    + '[filter:listing_formats]\nuse = egg:swift#listing_formats\n'
    + '[filter:s3api]\nuse = egg:swift#s3api\nlocation = us-east-1\n'
    + '[filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = testing .admin\n'
    + '[filter:copy]\nuse = egg:swift#copy\n'
    + '[filter:slo]\nuse = egg:swift#slo\n'
    + '[filter:dlo]\nuse = egg:swift#dlo\n'
    + '[filter:dict-cache]\npaste.filter_factory = __main__:dict_cache_factory\n',
}


class DictCache:
    """What tempauth and the proxy keep in memcached, kept in a dict (no memcached here)."""

    def __init__(self):
        self.data = {}

    def get(self, key, raise_on_error=False):
        return self.data.get(key)

    def set(self, key, value, serialize=True, time=0, min_compress_len=0, raise_on_error=False):
        self.data[key] = value

    def incr(self, key, delta=1, time=0):
        self.data[key] = int(self.data.get(key, 0)) + delta
        return self.data[key]

    def decr(self, key, delta=1, time=0):
        return self.incr(key, -delta, time)

    def delete(self, key, server_key=None):
        self.data.pop(key, None)


cache = DictCache()


def dict_cache_factory(global_conf, **local_conf):
    def make(app):
        def middleware(env, start_response):
            env['swift.cache'] = cache
            return app(env, start_response)

        return middleware

    return make


sys.modules['__main__'].dict_cache_factory = dict_cache_factory

servers = []
for name in ('account', 'container', 'object', 'proxy'):
    path = os.path.join(work, f'{name}.conf')
    with open(path, 'w') as f:
        f.write(configs[name])
    app = loadapp(path)
    servers.append(eventlet.spawn(wsgi.server, sockets[name], app, log_output=False))

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print(json.dumps({'endpoint': f'http://127.0.0.1:{ports["proxy"]}', 'accessKeyId': 'test:tester', 'secretAccessKey': 'testing'}), flush=True)
for server in servers:
    server.wait()
