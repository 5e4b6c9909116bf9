"""syncd keeps customer ownership right across HubSpot and Salesforce."""

__version__ = "0.1.0"
