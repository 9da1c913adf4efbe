"""The layer registry: publish, read, list, delete layer versions; their policies; and
what functions need of them (validation of ``Layers``, the merged ``/opt`` tree).

Scope: one per server. Invariants: the in-memory map equals the store's rows (every
write goes to the store first, then the map); writes are serialised by one lock;
version numbers grow per layer and are never reused (deleted versions stay in the map
and the store with ``deleted=True``). A deleted version is invisible to the API and to
new function configurations, but functions that already list it keep it in ``/opt``.

Permissions: Ember serves one account, so AddLayerVersionPermission statements are
stored and returned exactly as AWS shapes them, but nothing is enforced from them (every
caller with the admin credentials may use every layer). A layer ARN of another account
or region names no layer Ember has.
"""

from __future__ import annotations

import asyncio
import uuid
import zipfile
from dataclasses import replace
from pathlib import Path

from ember.clock import Clock
from ember.control.code import MAX_UNZIPPED, inspect_zip
from ember.errors import (
    InvalidParameterValueException,
    PreconditionFailedException,
    ResourceConflictException,
    ResourceNotFoundException,
)
from ember.model.functions import CodeInfo, FunctionConfig
from ember.model.layers import (
    LayerPolicy,
    LayerRef,
    LayerStatement,
    LayerVersion,
    PublishLayerInput,
    layer_arn,
    layer_version_arn,
    parse_layer_version_arn,
)
from ember.store.blobs import BlobStore
from ember.store.layer_trees import OptTrees
from ember.store.layers import LayerStore

NOT_FOUND = "The resource you requested does not exist."
POLICY_REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetLayerPolicy API to retrieve the latest Revision Id"
)


class LayerService:
    def __init__(
        self,
        store: LayerStore,
        blobs: BlobStore,
        trees: OptTrees,
        clock: Clock,
        region: str,
        account_id: str,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._trees = trees
        self._clock = clock
        self.region = region
        self.account = account_id
        self._versions: dict[str, dict[int, LayerVersion]] = {}  # name => number => version
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        for layer in await self._store.list_all():
            self._versions.setdefault(layer.name, {})[layer.version] = layer

    # ------------------------------------------------------------ ARNs

    def arn(self, name: str) -> str:
        return layer_arn(self.region, self.account, name)

    def version_arn(self, name: str, version: int) -> str:
        return layer_version_arn(self.region, self.account, name, version)

    def _ours(self, ref: LayerRef) -> bool:
        return ref.region in (None, self.region) and ref.account in (None, self.account)

    # ------------------------------------------------------------ versions

    async def publish(self, command: PublishLayerInput) -> LayerVersion:
        summary = await asyncio.to_thread(inspect_zip, command.zip_file)
        await self._blobs.put_zip(summary.sha256_hex, command.zip_file)
        await self._blobs.unpacked(summary.sha256_hex)  # unpacked once, at publish
        code = CodeInfo(summary.sha256_hex, summary.sha256_b64, summary.size)
        async with self._lock:
            versions = self._versions.get(command.name, {})
            layer = LayerVersion(
                name=command.name,
                version=max(versions, default=0) + 1,
                code=code,
                unzipped_size=summary.unzipped_size,
                created=self._clock.wall(),
                description=command.description,
                compatible_runtimes=command.compatible_runtimes,
                compatible_architectures=command.compatible_architectures,
                license_info=command.license_info,
            )
            if not await self._store.insert(layer):
                raise ResourceConflictException(
                    f"Layer version {self.version_arn(layer.name, layer.version)} already "
                    "exists; try again."
                )
            self._versions.setdefault(layer.name, {})[layer.version] = layer
        return layer

    def get(self, ref: LayerRef, version: int) -> LayerVersion:
        """A live version (GetLayerVersion); missing or deleted is AWS's 404."""
        layer = self._live(ref, version)
        if layer is None:
            raise ResourceNotFoundException(NOT_FOUND)
        return layer

    def get_by_arn(self, arn: str) -> LayerVersion:
        ref = parse_layer_version_arn(arn)
        if ref is None or ref.version is None:
            raise ResourceNotFoundException(NOT_FOUND)
        return self.get(ref, ref.version)

    def list_versions(
        self, ref: LayerRef, runtime: str | None, architecture: str | None
    ) -> list[LayerVersion]:
        """Live versions of a layer matching the filters, newest first."""
        if not self._ours(ref):
            return []
        versions = self._versions.get(ref.name, {})
        return [
            versions[n]
            for n in sorted(versions, reverse=True)
            if not versions[n].deleted and versions[n].matches(runtime, architecture)
        ]

    def list_layers(self, runtime: str | None, architecture: str | None) -> list[LayerVersion]:
        """Per layer (by name) its newest live version matching the filters."""
        latest: list[LayerVersion] = []
        for name in sorted(self._versions):
            matching = self.list_versions(LayerRef(name), runtime, architecture)
            if matching:
                latest.append(matching[0])
        return latest

    async def delete(self, ref: LayerRef, version: int) -> None:
        """DeleteLayerVersion: idempotent; the content stays for functions that use it."""
        async with self._lock:
            layer = self._live(ref, version)
            if layer is None:
                return
            deleted = replace(layer, deleted=True)
            await self._store.replace(deleted)
            self._versions[layer.name][layer.version] = deleted

    # ------------------------------------------------------------ policies

    async def add_permission(
        self, ref: LayerRef, version: int, statement: LayerStatement, revision_id: str | None
    ) -> tuple[LayerVersion, LayerPolicy]:
        async with self._lock:
            layer = self._for_policy(ref, version)
            policy = layer.policy or LayerPolicy(str(uuid.uuid4()))
            if policy.find(statement.sid) is not None:
                raise ResourceConflictException(
                    f"The statement id ({statement.sid}) provided already exists. Please "
                    "provide a new statement id, or remove the existing statement."
                )
            self._check_revision(layer, revision_id)
            updated = LayerPolicy(str(uuid.uuid4()), (*policy.statements, statement))
            await self._set_policy(layer, updated)
        return layer, updated

    async def remove_permission(
        self, ref: LayerRef, version: int, sid: str, revision_id: str | None
    ) -> None:
        async with self._lock:
            layer = self._for_policy(ref, version)
            if layer.policy is None or layer.policy.find(sid) is None:
                raise ResourceNotFoundException(f"Statement {sid} is not found in resource policy.")
            self._check_revision(layer, revision_id)
            kept = tuple(s for s in layer.policy.statements if s.sid != sid)
            await self._set_policy(layer, LayerPolicy(str(uuid.uuid4()), kept) if kept else None)

    def get_policy(self, ref: LayerRef, version: int) -> tuple[LayerVersion, LayerPolicy]:
        layer = self._for_policy(ref, version)
        if layer.policy is None:
            raise ResourceNotFoundException("No policy is associated with the given resource.")
        return layer, layer.policy

    def _for_policy(self, ref: LayerRef, version: int) -> LayerVersion:
        layer = self._live(ref, version)
        if layer is None:
            arn = layer_version_arn(
                ref.region or self.region, ref.account or self.account, ref.name, version
            )
            raise ResourceNotFoundException(f"Layer version {arn} does not exist.")
        return layer

    @staticmethod
    def _check_revision(layer: LayerVersion, revision_id: str | None) -> None:
        current = layer.policy.revision_id if layer.policy is not None else None
        if revision_id is not None and revision_id != current:
            raise PreconditionFailedException(POLICY_REVISION_MISMATCH)

    async def _set_policy(self, layer: LayerVersion, policy: LayerPolicy | None) -> None:
        updated = replace(layer, policy=policy)
        await self._store.replace(updated)
        self._versions[layer.name][layer.version] = updated

    def _live(self, ref: LayerRef, version: int) -> LayerVersion | None:
        if not self._ours(ref):
            return None
        layer = self._versions.get(ref.name, {}).get(version)
        return None if layer is None or layer.deleted else layer

    # ------------------------------------------------------------ functions' layers

    def _by_arn(self, arn: str, *, live: bool) -> LayerVersion | None:
        ref = parse_layer_version_arn(arn)
        if ref is None or ref.version is None or not self._ours(ref):
            return None
        layer = self._versions.get(ref.name, {}).get(ref.version)
        if layer is None or (live and layer.deleted):
            return None
        return layer

    async def attach(
        self, config: FunctionConfig, code_sha256_hex: str, previous: tuple[str, ...] = ()
    ) -> FunctionConfig:
        """Check a function's ``Layers`` (they exist; with the code ≤ 250 MB unzipped) and
        record each layer's CodeSize in the configuration.

        A layer the function already had (``previous``) keeps working after its deletion;
        a layer new to the configuration must be live.
        """
        if not config.layers:
            return replace(config, layer_code_sizes=())
        layers: list[LayerVersion] = []
        for arn in config.layers:
            ref = parse_layer_version_arn(arn)
            if ref is not None and ref.account == self.account and ref.region != self.region:
                raise InvalidParameterValueException(
                    "Layers are not in the same region as the function. Layers are expected "
                    f"to be in region {self.region}."
                )
            layer = self._by_arn(arn, live=arn not in previous)
            if layer is None:
                raise InvalidParameterValueException(f"Layer version {arn} does not exist.")
            layers.append(layer)
        zip_path = self._blobs.zip_path(code_sha256_hex)
        code_unzipped = await asyncio.to_thread(_unzipped_size, zip_path)
        total = code_unzipped + sum(layer.unzipped_size for layer in layers)
        if total > MAX_UNZIPPED:
            raise InvalidParameterValueException(
                "Function code combined with layers exceeds the maximum allowed size of "
                f"{MAX_UNZIPPED} bytes. The actual size is {total} bytes."
            )
        return replace(config, layer_code_sizes=tuple(layer.code.size for layer in layers))

    async def opt_dir(self, arns: tuple[str, ...]) -> Path | None:
        """The merged ``/opt`` tree of these layer versions (deleted ones included)."""
        shas: list[str] = []
        for arn in arns:
            layer = self._by_arn(arn, live=False)
            if layer is None:
                raise InvalidParameterValueException(f"Layer version {arn} does not exist.")
            shas.append(layer.code.sha256_hex)
        return await self._trees.tree(tuple(shas))

    def total_code_size(self) -> int:
        """Bytes of every live layer version's zip (AccountUsage.TotalCodeSize counts them)."""
        return sum(
            layer.code.size
            for versions in self._versions.values()
            for layer in versions.values()
            if not layer.deleted
        )

    async def close(self) -> None:
        await self._store.close()


def _unzipped_size(path: Path) -> int:
    """The sum of a stored zip's entry sizes (read from its central directory)."""
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist())
