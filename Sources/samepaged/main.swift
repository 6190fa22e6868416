print("samepaged")
