# A Spark job that runs until it is cancelled.
import time

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("bpg-long").getOrCreate()
print("bpg-long started", flush=True)
time.sleep(600)
