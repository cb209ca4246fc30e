"""cluster.yaml (Ray's cluster launcher on AWS) checked offline, so a typo fails CI, not `ray up`.

Ray's own validation is the one `ray up` runs before it touches AWS: `prepare_config` merges the AWS
defaults (a YAML file shipped with Ray) and `validate_config` checks the result against Ray's JSON
schema (ray/autoscaler/ray-schema.json). Neither imports boto3 nor needs credentials; the AWS bootstrap
that follows in `ray up` (key pair, IAM role, security group, subnets) does, and is not run here.
Both functions are private Ray API: Ray is pinned (2.60.0) in pyproject.toml.

Ray's schema leaves `provider` and each `node_config` open (any key passes), so those keys are also
checked here against the AWS provider's keys and EC2 RunInstances' parameters.
"""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from search.config import load_config
from segtune.paths import experiment_paths

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
SEARCH_YAML = ROOT / "spaces" / "configs" / "cluster_search.yaml"
README_INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"

# Keys the AWS node provider reads from `provider` (Ray 2.60, ray/autoscaler/_private/aws).
AWS_PROVIDER_KEYS = {"type", "region", "availability_zone", "cache_stopped_nodes", "use_internal_ips",
                     "use_external_head_ip", "security_group", "key_pair", "aws_credentials", "cloudwatch"}
# Parameters of EC2 RunInstances (boto3 create_instances), plus SubnetIds, which Ray adds.
EC2_NODE_CONFIG_KEYS = {
    "BlockDeviceMappings", "ImageId", "InstanceType", "Ipv6AddressCount", "Ipv6Addresses", "KernelId",
    "KeyName", "MaxCount", "MinCount", "Monitoring", "Placement", "RamdiskId", "SecurityGroupIds",
    "SecurityGroups", "SubnetId", "SubnetIds", "UserData", "AdditionalInfo", "ClientToken",
    "DisableApiTermination", "DryRun", "EbsOptimized", "IamInstanceProfile",
    "InstanceInitiatedShutdownBehavior", "NetworkInterfaces", "PrivateIpAddress", "ElasticGpuSpecification",
    "ElasticInferenceAccelerators", "TagSpecifications", "LaunchTemplate", "InstanceMarketOptions",
    "CreditSpecification", "CpuOptions", "CapacityReservationSpecification", "HibernationOptions",
    "LicenseSpecifications", "MetadataOptions", "EnclaveOptions", "PrivateDnsNameOptions",
    "MaintenanceOptions", "DisableApiStop", "EnablePrimaryIpv6", "NetworkPerformanceOptions", "Operator"}
GPU_INSTANCE = re.compile(r"^(g\d|p\d|inf\d|trn\d|dl\d)", re.I)


def ray_validate(config: dict) -> dict:
    """What `ray up` does with the file before it calls AWS; raises on an invalid config."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def open_key_problems(config: dict) -> list[str]:
    """Keys in the parts Ray's schema does not close: provider and each node_config."""
    problems = [f"provider.{k}" for k in config["provider"] if k not in AWS_PROVIDER_KEYS]
    for name, node_type in config["available_node_types"].items():
        problems += [f"{name}.node_config.{k}" for k in node_type["node_config"] if k not in EC2_NODE_CONFIG_KEYS]
    return problems


@pytest.fixture(scope="module")
def text() -> str:
    return CLUSTER_YAML.read_text()


@pytest.fixture(scope="module")
def config(text) -> dict:
    return yaml.safe_load(text)


def worker_types(config):
    return {n: t for n, t in config["available_node_types"].items() if n != config["head_node_type"]}


def test_ray_accepts_the_cluster_config(config):
    prepared = ray_validate(config)
    assert prepared["provider"]["type"] == "aws" and prepared["cluster_name"] == "segtune"
    assert not open_key_problems(config)


@pytest.mark.parametrize("typo, fixed", [
    ("        max_workers: 4\n", "        max_worker: 4\n"),              # in the GPU worker type
    ("\nmax_workers: 4\n", "\nmax_worker: 4\n"),                          # top level
    ("\nidle_timeout_minutes:", "\nidle_timeout_minute:"),
    ("\nhead_setup_commands:", "\nhead_setup_command:"),
    ("        resources: {\"CPU\": 4", "        resource: {\"CPU\": 4"),
    ("    ssh_user: ubuntu", "    ssh_usr: ubuntu"),
])
def test_ray_refuses_a_misspelled_key(text, typo, fixed):
    assert text.count(typo) == 1, f"the test's anchor {typo!r} is not unique in cluster.yaml"
    broken = yaml.safe_load(text.replace(typo, fixed))
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(broken)


@pytest.mark.parametrize("typo, fixed", [
    ("InstanceType: g5.xlarge", "InstanceTyp: g5.xlarge"),
    ("    region: us-west-2", "    regoin: us-west-2"),
])
def test_misspelled_keys_where_rays_schema_is_open_are_caught(text, typo, fixed):
    broken = yaml.safe_load(text.replace(typo, fixed))
    ray_validate(broken)  # Ray's schema lets these through ...
    assert open_key_problems(broken)  # ... this check does not


def test_gpu_workers_scale_from_zero(config):
    gpu_types = {n: t for n, t in worker_types(config).items() if t["resources"].get("GPU", 0) > 0}
    assert gpu_types, "no worker type offers a GPU"
    for name, node_type in gpu_types.items():
        assert node_type["min_workers"] == 0, name
        assert 1 <= node_type["max_workers"] <= config["max_workers"], name
        assert GPU_INSTANCE.match(node_type["node_config"]["InstanceType"]), name


def test_head_is_a_cpu_machine(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert not GPU_INSTANCE.match(head["node_config"]["InstanceType"])
    assert "InstanceMarketOptions" not in head["node_config"], "a spot head would take the search down with it"


def test_no_account_ids_or_keys_in_the_file(text, config):
    assert not re.search(r"(?<![\w-])\d{12}(?![\w-])", text), "a 12-digit number (AWS account id?)"
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), "an AWS access key id"
    assert not re.search(r"aws_secret_access_key|aws_access_key_id|aws_session_token", text, re.I)
    assert "aws_credentials" not in config["provider"]


def test_every_node_installs_segtune_the_way_the_readme_does(config):
    assert README_INSTALL in (ROOT / "README.md").read_text()
    assert config["file_mounts"].get("~/segtune") == "."
    install = [c for c in config["setup_commands"] if "pip install -e" in c]
    assert len(install) == 1, "one install command for every node (setup_commands), not per node type"
    command = " ".join(install[0].split())
    assert command.startswith("cd ~/segtune &&")
    assert "python3 -m venv .venv" in command and ".venv/bin/pip install -e '.[dev]'" in command
    # Ray runs in that venv on every node, so each node has the pinned Ray (2.60.0).
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts and all("~/segtune/.venv/bin/ray start" in c for c in starts), key


def test_nothing_listens_beyond_localhost_and_ssh(text, config):
    servers = [" ".join(c.split()) for c in config["head_start_ray_commands"] + config["head_setup_commands"]
               if "mlflow server" in c]
    assert len(servers) == 1
    assert "--host 127.0.0.1" in servers[0] and "--port 5000" in servers[0] and "--workers 1" in servers[0]
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in servers[0]
    head_start = " ".join(" ".join(config["head_start_ray_commands"]).split())
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in text


def test_ssh_is_open_only_to_the_users_own_address(config, text):
    group = ray_validate(config)["provider"]["security_group"]
    assert group["GroupName"] == "segtune-ssh"
    [ssh] = group["IpPermissions"]  # nothing but SSH is opened to the outside
    assert (ssh["IpProtocol"], ssh["FromPort"], ssh["ToPort"]) == ("tcp", 22, 22)
    assert [r["CidrIp"] for r in ssh["IpRanges"]] == ["YOUR.IP.ADDR.ESS/32"]  # a placeholder the user must replace
    assert "Ipv6Ranges" not in ssh and "0.0.0.0/0" not in str(group)
    # every node in that group: none gets a SecurityGroupIds of its own (Ray's wide-open default)
    assert all("SecurityGroupIds" not in t["node_config"] for t in config["available_node_types"].values())
    readme = (ROOT / "README.md").read_text()
    assert "--group-name segtune-ssh" in readme and "--cidr YOUR.IP.ADDR.ESS/32" in readme


def test_workers_may_reach_the_bucket_and_nothing_else(config):
    for name, node_type in worker_types(config).items():
        profile = node_type["node_config"]["IamInstanceProfile"]
        assert profile == {"Name": "segtune-worker"}, name  # not ray-autoscaler-v1 (all of EC2 and S3)
    head = config["available_node_types"][config["head_node_type"]]["node_config"]
    assert "IamInstanceProfile" not in head  # the head: Ray's autoscaler profile, which launches the workers
    policy = json.loads(re.search(r"```json\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1))
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert actions <= {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListBucket",
                       "s3:GetBucketLocation"}
    assert resources == {"arn:aws:s3:::YOUR-BUCKET", "arn:aws:s3:::YOUR-BUCKET/*"}


def test_ray_token_auth_on_every_node(config):
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert all("RAY_AUTH_MODE=token" in c for c in starts), key
    assert "~/.ray/auth_token" in config["cluster_synced_files"]
    assert any("get-auth-token --generate" in c for c in config["head_setup_commands"])


def keys_without_comment(text: str) -> list[str]:
    """Keys (at any depth) with neither a comment on their line nor a comment line just above."""
    lines = text.splitlines()
    missing = []

    def visit(node, path):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                line = key.start_mark.line
                inline = re.search(r"\s#", lines[line][key.end_mark.column:])
                above = line > 0 and lines[line - 1].lstrip().startswith("#")
                if not (inline or above):
                    missing.append(f"line {line + 1}: {path}{key.value}")
                visit(value, f"{path}{key.value}.")
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                visit(item, path)

    visit(yaml.compose(text), "")
    return missing


def test_every_key_has_a_comment(text):
    missing = keys_without_comment(text)
    assert not missing, f"keys without a comment: {missing}"


def test_a_key_without_a_comment_is_found(text):
    anchor = "            # 4 vCPUs, 16 GiB, 1 A10G"
    assert text.count(anchor) == 1
    stripped = re.sub(re.escape(anchor) + r".*\n", "", text)
    assert keys_without_comment(stripped) == [f"line {stripped.splitlines().index('            InstanceType: g5.xlarge') + 1}: "
                                              "available_node_types.worker.gpu.node_config.InstanceType"]


def test_cluster_search_config_fits_the_cluster(config):
    cfg = load_config(str(SEARCH_YAML))
    assert cfg.ray_address == "auto"
    assert cfg.tracking_uri == "http://127.0.0.1:5000"
    # Trials write to a bucket that every node reaches through its instance profile (no keys on nodes).
    assert experiment_paths(cfg.storage_path, "x").uri.startswith("s3://")
    # Trials pack whole onto a GPU worker: 1/gpus_per_trial trials, each with its CPUs.
    gpu_worker = next(t for t in worker_types(config).values() if t["resources"].get("GPU", 0) > 0)
    per_gpu = round(1 / cfg.gpus_per_trial)
    assert per_gpu * cfg.cpus_per_trial <= gpu_worker["resources"]["CPU"] / gpu_worker["resources"]["GPU"]
    assert cfg.max_failures >= 1, "spot workers get reclaimed: retry a trial from its checkpoint"
