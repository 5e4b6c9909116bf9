"""Local, wire-faithful Salesforce and HubSpot servers, with realistic seed data.

The sandbox is a product of its own: the demo, the tests, the benchmarks and an admin rehearsing a rules
change all run against it. The production code path does not know the difference: it talks HTTPS to
127.0.0.1 through the unmodified client libraries.
"""
