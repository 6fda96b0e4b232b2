"""Drives `bpg scheduler --listen` with apache-airflow-client 3.x, as a platform script written for
Airflow would: sign in, list DAGs, trigger healthtech_daily with conf, poll the run to success,
list its task instances, read calculate_pi's log, clear statistics_calc and see it run again.

    python airflow_script.py http://127.0.0.1:8081 USER PASSWORD

Exits non-zero (with the reason) on the first thing that is not as Airflow would answer.
"""

import sys
import time

import airflow_client.client as client
import requests
from airflow_client.client.api import dag_api, dag_run_api, monitor_api, task_instance_api
from airflow_client.client.models.clear_task_instances_body import ClearTaskInstancesBody
from airflow_client.client.models.clear_task_instances_body_task_ids_inner import ClearTaskInstancesBodyTaskIdsInner
from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody
from airflow_client.client.exceptions import NotFoundException, UnauthorizedException

DAG = "healthtech_daily"


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


def wait_for(read, done, what, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = read()
        if done(value):
            return value
        time.sleep(0.2)
    sys.exit(f"FAILED: timed out waiting for {what}")


def main(host, username, password):
    # Airflow 3's documented sign-in: POST /auth/token, then a bearer token.
    answer = requests.post(f"{host}/auth/token", json={"username": username, "password": password}, timeout=30)
    check(answer.status_code == 201, f"POST /auth/token answers 201 (got {answer.status_code})")
    token = answer.json()["access_token"]
    bad = requests.post(f"{host}/auth/token", json={"username": username, "password": "wrong"}, timeout=30)
    check(bad.status_code == 401, "a wrong password is a 401")

    # Without a token: 401, as an exception of the client.
    with client.ApiClient(client.Configuration(host=host)) as anonymous:
        try:
            dag_api.DAGApi(anonymous).get_dags()
            check(False, "an unauthenticated call is refused")
        except UnauthorizedException:
            check(True, "an unauthenticated call is refused with 401")

    configuration = client.Configuration(host=host, access_token=token)
    with client.ApiClient(configuration) as api:
        health = monitor_api.MonitorApi(api).get_health()
        check(health.metadatabase.status == "healthy", "monitor/health: the store is healthy")

        dags = dag_api.DAGApi(api).get_dags()
        ids = [d.dag_id for d in dags.dags]
        check(DAG in ids, f"get_dags lists {DAG} (all: {ids})")
        dag = dag_api.DAGApi(api).get_dag(DAG)
        check(dag.is_paused is False, "the DAG is not paused")
        try:
            dag_api.DAGApi(api).get_dag("no_such_dag")
            check(False, "an unknown DAG is a 404")
        except NotFoundException:
            check(True, "an unknown DAG is a 404")

        runs = dag_run_api.DagRunApi(api)
        body = TriggerDAGRunPostBody(conf={"partitions": 7}, logical_date=None)
        run = runs.trigger_dag_run(DAG, body)
        run_id = run.dag_run_id
        check(run.state.value in ("queued", "running"), f"triggered {run_id} ({run.state.value})")
        run = wait_for(lambda: runs.get_dag_run(DAG, run_id), lambda r: r.state.value in ("success", "failed"), "the run to end")
        check(run.state.value == "success", f"the run ended success (got {run.state.value})")
        check(run.conf.get("partitions") == 7, f"the run kept its conf ({run.conf})")
        listed = runs.get_dag_runs(DAG, limit=10)
        check(any(r.dag_run_id == run_id for r in listed.dag_runs), "get_dag_runs lists the run")

        tis = task_instance_api.TaskInstanceApi(api)
        instances = tis.get_task_instances(DAG, run_id).task_instances
        states = {t.task_id: t.state.value if t.state else None for t in instances}
        check(set(states) == {"start", "calculate_pi", "word_count", "statistics_calc", "end"}, f"five task instances ({sorted(states)})")
        check(all(s == "success" for s in states.values()), f"every task succeeded ({states})")
        pi = tis.get_task_instance(DAG, run_id, "calculate_pi")
        check(pi.try_number == 1, "calculate_pi ran once")

        log = tis.get_log(DAG, run_id, "calculate_pi", 1)
        lines = [m.event for m in log.content.actual_instance]
        check(any("[bpg] try 1" in line for line in lines), "calculate_pi's log holds the runner's lines")
        check(len(lines) >= 3, f"calculate_pi's log holds the driver's lines too ({len(lines)} lines)")
        again = tis.get_log(DAG, run_id, "calculate_pi", 1, token=log.continuation_token)
        check(len(again.content.actual_instance) == 0, "reading on from the continuation token: nothing new")

        stats = tis.get_task_instance(DAG, run_id, "statistics_calc")
        cleared = tis.post_clear_task_instances(
            DAG,
            ClearTaskInstancesBody(dag_run_id=run_id, task_ids=[ClearTaskInstancesBodyTaskIdsInner("statistics_calc")], include_downstream=True, only_failed=False, dry_run=False),
        )
        ids = sorted(t.task_id for t in cleared.task_instances)
        check(ids == ["end", "statistics_calc"], f"clearing statistics_calc clears it and its downstream ({ids})")
        wait_for(
            lambda: tis.get_task_instance(DAG, run_id, "statistics_calc"),
            lambda t: t.try_number == stats.try_number + 1 and t.state is not None and t.state.value == "success",
            "statistics_calc to run again",
        )
        run = wait_for(lambda: runs.get_dag_run(DAG, run_id), lambda r: r.state.value in ("success", "failed"), "the cleared run to end")
        check(run.state.value == "success", "the cleared run ended success again")
        pi_after = tis.get_task_instance(DAG, run_id, "calculate_pi")
        check(pi_after.try_number == 1, "calculate_pi (not cleared) did not run again")
        relog = tis.get_log(DAG, run_id, "statistics_calc", stats.try_number + 1)
        check(len(relog.content.actual_instance) > 0, "the new try has a log of its own")
    print("airflow client script: all good")


if __name__ == "__main__":
    main(*sys.argv[1:4])
