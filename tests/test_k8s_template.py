"""The Kubernetes GPU work-pool template, checked against the prefect-kubernetes worker itself.

The worker turns a base job template plus a deployment's job variables into a Job manifest with
``KubernetesWorkerJobConfiguration.from_template_and_values`` and ``prepare_for_flow_run``; these tests
run exactly that, with no cluster, and look at the manifest it would submit.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.utilities.schema_tools.validation import ValidationError, is_valid_schema, validate
from prefect.utilities.templating import find_placeholders
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "configs" / "k8s" / "gpu-job-template.json"
# The worker in the cluster uses its in-cluster service account, so the template has no cluster_config block.
NOT_NEEDED_IN_CLUSTER = {"cluster_config"}


@pytest.fixture(scope="module")
def template() -> dict:
    return json.loads(TEMPLATE_PATH.read_text(encoding="utf-8"))


def job_manifest(template: dict, job_variables: dict) -> dict:
    """The Job manifest the worker would submit for a flow run of a deployment with ``job_variables``."""
    # An unconnected client: the template has no block or Prefect-variable references, so none is read.
    offline_client = PrefectClient("http://127.0.0.1:9/api")
    configuration = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, job_variables, client=offline_client))
    configuration.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="brave-otter"))
    return configuration.job_manifest


def test_template_has_the_workers_shape(template: dict):
    default = KubernetesWorker.get_default_base_job_template()
    assert template.keys() == default.keys()
    assert template["job_configuration"].keys() == default["job_configuration"].keys() - NOT_NEEDED_IN_CLUSTER
    # the server's own check when the pool is created: every placeholder is a declared variable
    WorkPoolCreate(name="podforge-gpu", type="kubernetes", base_job_template=template)
    placeholders = {placeholder.name for placeholder in find_placeholders(template["job_configuration"])}
    assert placeholders <= template["variables"]["properties"].keys()
    assert {"gpu_type", "gpu_count", "image"} <= placeholders
    is_valid_schema(template["variables"])


def test_manifest_requests_gpus_on_the_labelled_nodes(template: dict):
    manifest = job_manifest(template, {"image": "registry.example.org/podforge-gpu:0.1", "gpu_type": "a10g", "gpu_count": 2})
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.org/podforge-gpu:0.1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert pod["nodeSelector"] == {"gpu-type": "a10g"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["PODFORGE_HOME"] == "/data/podforge-home"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "podforge-data"
    assert container["volumeMounts"][0]["mountPath"] == "/data"
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert "{{" not in json.dumps(manifest), "every placeholder is filled"


def test_defaults_and_unset_optional_values(template: dict):
    manifest = job_manifest(template, {"image": "podforge-gpu:dev"})
    pod = manifest["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert pod["nodeSelector"] == {"gpu-type": "t4"}
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert "serviceAccountName" not in pod, "an unset optional value leaves no key behind"
    assert manifest["metadata"]["namespace"] == "podforge"


@pytest.mark.parametrize("gpu_type", ["t4", "a10g", "v100", "a100"])
def test_each_gpu_type_is_accepted_per_deployment(template: dict, gpu_type: str):
    validate({"image": "x", "gpu_type": gpu_type}, template["variables"], raise_on_error=True)
    assert job_manifest(template, {"image": "x", "gpu_type": gpu_type})["spec"]["template"]["spec"]["nodeSelector"]["gpu-type"] == gpu_type


@pytest.mark.parametrize(
    ("job_variables", "field"),
    [({"image": "x", "gpu_type": "k80"}, "gpu_type"), ({"image": "x", "gpu_count": 0}, "gpu_count"), ({"gpu_type": "t4"}, "image")],
)
def test_bad_job_variables_are_rejected(template: dict, job_variables: dict, field: str):
    with pytest.raises(ValidationError, match=field):
        validate(job_variables, template["variables"], raise_on_error=True)
