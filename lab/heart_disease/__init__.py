"""A local stand-in of the Heart Disease Prediction system: model build, API, worker and faults.

See docs/lab-heart-disease.md for the layout, ports, endpoints and faults.
"""
